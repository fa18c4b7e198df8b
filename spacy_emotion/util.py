"""Small helpers shared by the data, backbone, CLI and REST modules."""
import html
import os
import socket
from typing import Optional
from urllib.parse import urlparse


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub can be reached from this machine.

    Honours HF_HUB_OFFLINE / HF_DATASETS_OFFLINE / TRANSFORMERS_OFFLINE and
    HF_ENDPOINT. A quick TCP probe avoids the libraries' long retry loops on
    machines without a network.
    """
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


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


def markdown_cell(value: object) -> str:
    """`value` as the text of one markdown table cell: one line, `|` escaped,
    and `&`, `<`, `>` as HTML entities, so a text that holds HTML (a test
    example, a user's input) shows as text in a markdown viewer."""
    text = " ".join(str(value).split())
    return html.escape(text, quote=False).replace("|", "\\|")
