"""Checks on the texts a user gives: one rule for the data reader, `predict`,
`annotate` and the REST API."""

from typing import Optional


def invalid_text(text: str) -> Optional[str]:
    """Why `text` can't be classified, or None. A Python string can hold what
    no UTF-8 text holds: a lone surrogate (JSON's "\\ud800", undecodable bytes
    read with "surrogateescape"), which spaCy's tokenizer rejects with a
    UnicodeEncodeError. The data reader, `annotate` and the REST API check texts
    with this before the model runs."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        code = ord(err.object[err.start])
        what = f"the byte 0x{code - 0xDC00:02X}" if 0xDC80 <= code <= 0xDCFF else f"a lone surrogate (U+{code:04X})"
        return f"not valid UTF-8 text: character {err.start} is {what}"
    return None
