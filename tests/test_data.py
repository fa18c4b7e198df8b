"""Reading dair-ai/emotion from local files and converting it to DocBin corpora."""

import json
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin

from spacy_emotion.labels import LABELS
from spacy_emotion.training.corpus import convert, make_docbin
from spacy_emotion.training.dataset import DataError, Example, load_splits, parse_label, read_file, read_folder, sample

GOOD = [("i feel happy; really", "joy"), ("im so scared", "fear"), ("what a surprise", "surprise")]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf8")
    return path


def write_good(path: Path) -> Path:
    fmt = path.suffix
    if fmt == ".txt":
        return write(path, "".join(f"{t};{l}\n" for t, l in GOOD))
    if fmt == ".jsonl":
        return write(path, "".join(json.dumps({"text": t, "label": LABELS.index(l)}) + "\n" for t, l in GOOD))
    if fmt == ".csv":
        import csv

        with path.open("w", newline="", encoding="utf8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            for t, l in GOOD:
                w.writerow([t, LABELS.index(l)])
        return path
    if fmt == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"text": [t for t, _ in GOOD], "label": [LABELS.index(l) for _, l in GOOD]}), path)
        return path
    raise ValueError(fmt)


@pytest.mark.parametrize("fmt", [".txt", ".jsonl", ".csv", ".parquet"])
def test_read_good_rows_every_format(tmp_path, fmt):
    split = read_file(write_good(tmp_path / f"train{fmt}"))
    assert [(e.text, e.label) for e in split.examples] == GOOD
    assert split.skipped == []


@pytest.mark.parametrize(
    "suffix,content",
    [
        (".txt", "i feel happy;joy\ni am sad;sadness\n"),
        (".jsonl", '{"text": "i feel happy", "label": 1}\n{"text": "i am sad", "label": 0}\n'),
        (".csv", "text,label\ni feel happy,joy\ni am sad,sadness\n"),
    ],
)
def test_a_byte_order_mark_is_not_part_of_the_data(tmp_path, suffix, content):
    """Files saved by Excel or Notepad may start with a UTF-8 byte-order mark."""
    path = tmp_path / f"train{suffix}"
    path.write_bytes(b"\xef\xbb\xbf" + content.encode("utf-8"))
    assert read_file(path).examples == [Example("i feel happy", "joy"), Example("i am sad", "sadness")]


@pytest.mark.parametrize(
    "suffix,line",
    [
        (".txt", b"i feel \xff sad;sadness"),
        (".csv", b"i feel \xff sad,sadness"),
        (".jsonl", b'{"text": "i feel \xff sad", "label": 0}'),
    ],
)
def test_bytes_that_are_not_utf8_name_file_and_line(tmp_path, suffix, line):
    header = b"text,label\n" if suffix == ".csv" else b""
    first = {".txt": b"fine;joy", ".csv": b"fine,joy", ".jsonl": b'{"text": "fine", "label": 1}'}[suffix]
    path = tmp_path / f"train{suffix}"
    path.write_bytes(header + first + b"\n" + line + b"\n")
    bad_line = 3 if header else 2
    with pytest.raises(DataError) as err:
        read_file(path)
    assert err.value.line == bad_line and "not valid UTF-8" in str(err.value) and "0xFF" in str(err.value)
    split = read_file(path, skip_invalid=True)
    assert split.examples == [Example("fine", "joy")] and [e.line for e in split.skipped] == [bad_line]


def test_txt_splits_on_last_semicolon(tmp_path):
    split = read_file(write(tmp_path / "t.txt", "a;b;c;love\n"))
    assert split.examples == [Example("a;b;c", "love")]


@pytest.mark.parametrize(
    "fmt,content,line,reason",
    [
        (".txt", "fine;joy\ni have no separator\n", 2, "no ';'"),
        (".txt", "fine;joy\nhello;happiness\n", 2, "unknown label"),
        (".txt", "fine;joy\n   ;joy\n", 2, "empty text"),
        (".txt", "fine;joy\n\n", 2, "empty line"),
        (".jsonl", '{"text": "ok", "label": 1}\n{"text": "broken", \n', 2, "bad JSON"),
        (".jsonl", '{"text": "ok", "label": 1}\n{"text": "x", "label": 6}\n', 2, "outside 0-5"),
        (".jsonl", '{"text": "ok", "label": 1}\n{"label": 2}\n', 2, "missing field 'text'"),
        (".jsonl", '{"text": "ok", "label": 1}\n{"text": 5, "label": 2}\n', 2, "must be a string"),
        (".jsonl", '{"text": "ok", "label": 1}\n[1, 2]\n', 2, "must be an object"),
        (".csv", "text,label\nok,1\n,2\n", 3, "empty text"),
        (".csv", "text,label\nok,1\nbad,rage\n", 3, "unknown label"),
        (".csv", "words,label\nok,1\n", 1, "missing column"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, fmt, content, line, reason):
    path = write(tmp_path / f"train{fmt}", content)
    with pytest.raises(DataError) as err:
        read_file(path)
    assert err.value.line == line
    assert str(path) in str(err.value) and f"line {line}" in str(err.value)
    assert reason in str(err.value)


def test_bad_parquet_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"text": ["ok", "bad"], "label": [1, 9]}), path)
    with pytest.raises(DataError, match="line 2"):
        read_file(path)


def test_skip_invalid_counts_and_keeps_the_rest(tmp_path):
    path = write(tmp_path / "train.txt", "a;joy\nno separator\nb;rage\nc;fear\n")
    split = read_file(path, skip_invalid=True)
    assert [e.text for e in split.examples] == ["a", "c"]
    assert [e.line for e in split.skipped] == [2, 3]


def test_parse_label():
    assert parse_label(0) == "sadness" and parse_label("5") == "surprise" and parse_label("Joy") == "joy"
    for bad in (-1, 6, "happy", True, None, 1.5):
        with pytest.raises(ValueError):
            parse_label(bad)


def test_mirror_matches_its_readme():
    """The shared mirror: both layouts agree and the counts are those of its README."""
    mirror = Path(__file__).resolve().parents[2] / "shared" / "data" / "emotion"
    if not mirror.is_dir():
        pytest.skip("data mirror not present")
    txt = read_file(mirror / "validation.txt")
    jsonl = read_file(mirror / "validation.jsonl")
    assert [(e.text, e.label) for e in txt.examples] == [(e.text, e.label) for e in jsonl.examples]
    assert txt.label_counts() == {"sadness": 550, "joy": 704, "love": 178, "anger": 275, "fear": 212, "surprise": 81}


def test_load_splits_falls_back_when_hub_unreachable(toy_folder, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    splits, used = load_splits("auto", fallback=toy_folder)
    assert set(splits) == {"train", "validation", "test"}
    assert str(toy_folder) in used and "unreachable" in used


def test_load_splits_hub_only_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="dair-ai/emotion"):
        load_splits("hub")


def test_missing_split_file(tmp_path):
    write_good(tmp_path / "train.txt")
    with pytest.raises(FileNotFoundError, match="validation"):
        read_folder(tmp_path)


def test_sample_is_reproducible_and_ordered():
    examples = [Example(str(i), "joy") for i in range(100)]
    a, b = sample(examples, 10, seed=3), sample(examples, 10, seed=3)
    assert a == b and len(a) == 10
    assert [int(e.text) for e in a] == sorted(int(e.text) for e in a)
    assert sample(examples, 0) == examples


def test_docbin_has_all_six_labels_one_gold():
    nlp = spacy.blank("en")
    docs = list(make_docbin([Example(t, l) for t, l in GOOD]).get_docs(nlp.vocab))
    for doc, (text, label) in zip(docs, GOOD):
        assert doc.text == text
        assert list(doc.cats) == list(LABELS)
        assert doc.cats[label] == 1.0 and sum(doc.cats.values()) == 1.0


def test_convert_writes_three_corpora(toy_folder, tmp_path, capsys):
    paths = convert(tmp_path, source=str(toy_folder), limit=5)
    assert {p.name for p in paths.values()} == {"train.spacy", "dev.spacy", "test.spacy"}
    nlp = spacy.blank("en")
    assert len(list(DocBin().from_disk(paths["train"]).get_docs(nlp.vocab))) == 5
    out = capsys.readouterr().out
    assert "Data source: local folder" in out and "surprise" in out


def test_convert_cli_reports_bad_row(tmp_path):
    from typer.testing import CliRunner

    from spacy_emotion.cli import app

    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "validation", "test"):
        write_good(data / f"{split}.txt")
    write(data / "test.txt", "ok;joy\nbroken line\n")
    runner = CliRunner()
    result = runner.invoke(app, ["convert", str(tmp_path / "corpus"), "--data", str(data)])
    assert result.exit_code == 1
    assert "test.txt, line 2: no ';'" in " ".join(result.output.split())
    result = runner.invoke(app, ["convert", str(tmp_path / "corpus"), "--data", str(data), "--skip-invalid"])
    assert result.exit_code == 0, result.output
    assert "Skipped 1 invalid row" in result.output
