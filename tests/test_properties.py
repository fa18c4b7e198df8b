"""Properties that hold for any input: arbitrary Unicode texts through the
component and the predict core, arbitrary bytes through annotate's readers.

Texts mix control characters, combining marks, right-to-left scripts, emoji,
zero-width characters, lone surrogates, empty and whitespace-only strings and,
built cheaply by repetition, texts of up to 100,000 characters. The models are
tiny and random (no training), in float32 so that batching changes nothing
beyond float rounding on any machine.
"""

import csv
import io
import json

import numpy as np
import pytest
from conftest import random_head_pipeline
from helpers import classifier
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny import toy_examples

from spacy_emotion.labels import LABELS
from spacy_emotion.serving.annotate_files import Job, RowReader, annotate
from spacy_emotion.serving.classify import build_pipeline, classify
from spacy_emotion.texts import invalid_text

FLOAT32 = 1e-5
LONGEST = 100_000
PIECES = [
    *(t for t, _ in toy_examples(1)),
    "\x00",
    "\x07",
    "\x1b[31m",
    "\t",
    "\n",
    "\r",
    "\r\n",
    "\x0b\x0c",
    "\x85",
    "\u2028",
    "e\u0301",  # combining acute accent
    "\u0336\u0336\u0336",  # combining marks with nothing to combine with
    "مرحبا بالعالم",
    "שלום",
    "\u202eevil\u202c",  # right-to-left override
    "😀",
    "👩\u200d👩\u200d👧",  # a zero-width-joiner sequence
    "🇺🇳",
    "\u200b",
    "\u200d",
    "\ufeff",
    "漢字かな交じり文",
    " ",
    "",
]
SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)

short_texts = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(PIECES), max_size=12).map("".join),
    st.sampled_from(["", " ", "\n\t ", "\u200b\u200b", "\u3000"]),
)
long_texts = st.builds(
    lambda unit, length: (unit * (length // max(len(unit), 1) + 1))[:length] if unit else "",
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=6).map("".join),
    st.integers(1_000, LONGEST),
)
with_surrogate = st.builds(lambda a, s, b: a + s + b, short_texts, SURROGATES, short_texts)


def batches(texts, max_size: int):
    """Lists of `texts` with, in some, one long text at any place (long texts are costly)."""
    return st.builds(
        lambda items, long, at: items[:at] + [long] + items[at:] if long is not None else items,
        st.lists(texts, max_size=max_size),
        st.one_of(st.none(), st.none(), long_texts),
        st.integers(0, max_size),
    )


FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", params=["huggingface", "spacy"])
def nlp(request, hf_checkpoint, tmp_path_factory):
    """The component over each backend: an HF checkpoint, and a spaCy
    transformer pipeline (through its fast path)."""
    if request.param == "huggingface":
        model = hf_checkpoint
    else:
        model = random_head_pipeline("bert", tmp_path_factory.mktemp("props"))
    nlp = classifier(model, quantize="none")
    nlp.max_length = 10 * LONGEST
    nlp.initialize()
    return nlp


@pytest.fixture(scope="module")
def core(hf_checkpoint):
    """The predict core's pipeline: a sentencizer and the component over the HF checkpoint."""
    return build_pipeline(str(hf_checkpoint), per_sentence=False, speed={"quantize": "none"})


def check_cats(doc):
    assert list(doc.cats) == list(LABELS)
    values = np.asarray(list(doc.cats.values()))
    assert np.all(values >= 0) and abs(values.sum() - 1) <= FLOAT32


@FAST
@given(texts=batches(short_texts, 9), batch_size=st.integers(1, 8))
def test_any_texts_in_any_batches_give_the_scores_of_one_at_a_time(nlp, texts, batch_size):
    docs = list(nlp.pipe(texts, batch_size=batch_size))
    assert [doc.text for doc in docs] == texts
    for doc in docs:
        check_cats(doc)
        if not doc.text.strip():
            assert doc._.emotion is None and list(doc.cats.values()) == pytest.approx([1 / 6] * 6)
        else:
            assert doc._.emotion in LABELS
    for text, doc in zip(texts, docs):
        alone = nlp(text).cats
        assert list(doc.cats.values()) == pytest.approx(list(alone.values()), abs=FLOAT32)


@FAST
@given(texts=st.lists(st.one_of(short_texts, with_surrogate), max_size=8), batch_size=st.integers(1, 4))
def test_a_lone_surrogate_is_the_one_error(core, texts, batch_size):
    """A string no UTF-8 text can hold raises UnicodeEncodeError when the
    tokenizer reaches it (docs/component.md); docs before its batch come out
    annotated, in order. Every other text is classified."""
    bad = [i for i, text in enumerate(texts) if invalid_text(text)]
    done = []
    if bad:
        with pytest.raises(UnicodeEncodeError):
            for doc in core.pipe(texts, batch_size=batch_size):
                done.append(doc)
        assert len(done) <= bad[0]
    else:
        done = list(core.pipe(texts, batch_size=batch_size))
        assert len(done) == len(texts)
    assert [doc.text for doc in done] == texts[: len(done)]
    for doc in done:
        check_cats(doc)


@FAST
@given(texts=batches(short_texts, 7), batch_size=st.integers(1, 8), sentences=st.booleans())
def test_the_predict_core_gives_one_result_per_text(core, texts, batch_size, sentences):
    results = list(classify(core, texts, batch_size=batch_size, sentences=sentences))
    assert len(results) == len(texts)
    for text, result in zip(texts, results):
        assert list(result["cats"]) == list(LABELS)
        assert abs(sum(result["cats"].values()) - 1) <= FLOAT32
        assert (result["emotion"] is None) == (not text.strip())
        if sentences:
            spans = [(s["start_char"], s["end_char"]) for s in result["sentences"]]
            assert all(text[a:b] == s["text"] for (a, b), s in zip(spans, result["sentences"]))
            assert spans == sorted(spans)


# ---- annotate's readers ----------------------------------------------------------

line_ends = st.sampled_from([b"\n", b"\r\n", b"\r", b""])
raw_lines = st.one_of(
    st.binary(max_size=60),  # random bytes: invalid UTF-8, NULs, stray quotes and braces
    st.text(max_size=40).map(lambda t: t.encode("utf8")),
    st.sampled_from([b"", b" ", b"\t", b'"', b'1,"open', b'2,"a""b"', b"\xff\xfe", b"\xef\xbb\xbf"]),
    st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=8), st.integers(1_000, 20_000)),  # huge lines
)
raw_files = st.lists(st.tuples(raw_lines, line_ends), max_size=12).map(
    lambda parts: b"".join(line.replace(b"\n", b"") + end for line, end in parts)
)


def physical_lines(data: bytes) -> int:
    """Lines as the readers count them: ended by \\n (a lone \\r stays inside its line)."""
    return data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)


def check_rows(reader: RowReader, data: bytes):
    """Read every row of a one-line-a-row format: each line is a row or a
    blank line the reader counted, the reader ends at the end of the data."""
    rows = []
    for row in reader.rows():
        assert row.line == reader.line and (row.text is None) != (row.error is None)
        assert row.text is None or invalid_text(row.text) is None
        rows.append(row)
    assert reader.offset == len(data) and reader.line == physical_lines(data)
    assert len(rows) + reader.blank == physical_lines(data)
    return rows


@FAST
@given(data=raw_files)
def test_txt_lines_are_rows(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("txt") / "in.txt"
    path.write_bytes(data)
    rows = check_rows(RowReader(path, "txt"), data)
    assert [row.line for row in rows] == list(range(1, physical_lines(data) + 1))


@FAST
@given(data=raw_files)
def test_jsonl_lines_are_rows_or_blank(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("jsonl") / "in.jsonl"
    path.write_bytes(data)
    rows = check_rows(RowReader(path, "jsonl"), data)
    lines = data.split(b"\n")
    lines[0] = lines[0].removeprefix(b"\xef\xbb\xbf")
    assert [row.line for row in rows] == [i for i, line in enumerate(lines[: physical_lines(data)], 1) if line.strip()]


jsonl_values = st.one_of(
    st.text(max_size=30),
    SURROGATES,
    st.none(),
    st.integers(),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=3),
)


@FAST
@given(
    records=st.lists(st.dictionaries(st.sampled_from(["text", "id", "x"]), jsonl_values), max_size=10),
    garbage=st.lists(st.sampled_from(["1" * 5000, "[" * 100_000, "{", '"\\ud800"', "NaN"]), max_size=3),
)
def test_jsonl_values_and_json_python_cannot_read(tmp_path_factory, records, garbage):
    lines = [json.dumps(r) for r in records] + garbage
    path = tmp_path_factory.mktemp("jsonl") / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf8")
    rows = list(RowReader(path, "jsonl").rows())
    assert [row.line for row in rows] == list(range(1, len(lines) + 1))
    for row, record in zip(rows, records):
        text = record.get("text")
        ok = isinstance(text, str) and invalid_text(text) is None
        assert (row.text, row.error is None) == ((text, True) if ok else (None, False))


csv_texts = st.one_of(st.text(max_size=30), SURROGATES, st.sampled_from(['"', '""', 'a"b', "\r", "x\ny", ",", " "]))


@FAST
@given(items=st.lists(st.one_of(st.none(), csv_texts), max_size=10), end=st.sampled_from(["\n", "\r\n"]))
def test_csv_records_round_trip(tmp_path_factory, items, end):
    """Records written by csv.writer (quotes, commas, newlines inside fields)
    come back with their text, at their first line; None is a blank line."""
    buf = io.StringIO(newline="")
    # csv.writer leaves a lone \r unquoted when lines end in \n, and no CSV reader can tell it from a line end
    writer = csv.writer(buf, lineterminator=end, quoting=csv.QUOTE_ALL if end == "\n" else csv.QUOTE_MINIMAL)
    writer.writerow(["id", "text"])
    starts, line = [], 2
    for i, text in enumerate(items):
        if text is None:
            buf.write(end)
            line += 1
            continue
        before = buf.tell()
        writer.writerow([i, text])
        starts.append((line, str(i), text))
        line += buf.getvalue()[before:].count("\n")
    path = tmp_path_factory.mktemp("csv") / "in.csv"
    path.write_bytes(buf.getvalue().encode("utf8", "surrogatepass"))
    reader = RowReader(path, "csv")
    rows = list(reader.rows())
    assert [(row.line, row.id) for row in rows] == [(n, i) for n, i, _ in starts]
    assert [row.text for row in rows] == [None if invalid_text(text) else text for _, _, text in starts]
    assert reader.blank == items.count(None)


def test_a_carriage_return_outside_quotes_is_an_error_row(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(b'id,text\n1,a\rb\n2,"c\rd"\n3,e\r\n4,f\n')
    rows = list(RowReader(path, "csv").rows())
    assert [(r.line, r.id, r.text) for r in rows] == [(2, "1", None), (3, "2", "c\rd"), (4, "3", "e"), (5, "4", "f")]
    assert "carriage return" in rows[0].error


@FAST
@given(data=raw_files)
def test_csv_bytes_are_rows_or_blank(tmp_path_factory, data):
    """Any bytes after a header: every line is in one row or counted blank,
    broken quoting and carriage returns included."""
    path = tmp_path_factory.mktemp("csv") / "in.csv"
    path.write_bytes(b"id,text\n" + data)
    reader = RowReader(path, "csv")
    rows, prev_end, blank_lines = [], 1, 0
    for row in reader.rows():
        assert row.line > prev_end and (row.text is None) != (row.error is None)
        blank_lines += row.line - prev_end - 1
        rows.append(row)
        prev_end = reader.line
    assert reader.offset == len(data) + len(b"id,text\n")
    assert reader.line == physical_lines(b"id,text\n" + data)
    assert blank_lines + (reader.line - prev_end) == reader.blank


@pytest.fixture(scope="module")
def annotate_nlp(hf_checkpoint):
    return build_pipeline(str(hf_checkpoint), speed={"quantize": "none"})


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=raw_files, fmt=st.sampled_from(["txt", "jsonl", "csv"]), batch_size=st.integers(1, 5))
def test_annotate_writes_each_row_once_in_order(tmp_path_factory, annotate_nlp, hf_checkpoint, data, fmt, batch_size):
    folder = tmp_path_factory.mktemp("annotate")
    source = folder / f"in.{fmt}"
    source.write_bytes((b"id,text\n" if fmt == "csv" else b"") + data)
    expected = [row.line for row in RowReader(source, fmt).rows()]
    job = Job(source, folder / "out.jsonl", model=str(hf_checkpoint), batch_size=batch_size)
    summary = annotate(job, annotate_nlp, progress_bar=False)
    written = [json.loads(line) for line in job.output.read_text(encoding="utf8").splitlines()]
    failed = [json.loads(line) for line in job.errors.read_text(encoding="utf8").splitlines()] if summary.errors else []
    assert [r["line"] for r in written] == sorted(r["line"] for r in written)
    assert [r["line"] for r in failed] == sorted(r["line"] for r in failed)
    assert sorted(r["line"] for r in written + failed) == expected
    assert (summary.rows, summary.annotated, summary.failed) == (len(expected), len(written), len(failed))
