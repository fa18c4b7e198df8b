"""`spacy-emotion annotate`: formats, errors file, exit codes, streaming, resume after a kill."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spacy_emotion.cli import annotate as annotate_cli
from spacy_emotion.cli import app
from spacy_emotion.labels import LABELS
from spacy_emotion.serving.annotate_files import (
    AnnotateError,
    Job,
    RowReader,
    annotate,
    check_job,
    checkpoint_path,
    default_errors_path,
)
from spacy_emotion.serving.classify import build_pipeline, classify

WORDS = ["happy", "sad", "angry", "scared", "amazed", "loving", "glad", "lonely", "furious", "nervous"]


def texts(n):
    return [f"i feel {WORDS[i % len(WORDS)]} today. number {i} is here." for i in range(n)]


@pytest.fixture(scope="module")
def model(trained_pipeline):
    return str(trained_pipeline)


@pytest.fixture(scope="module")
def nlp(model):
    return build_pipeline(model)


@pytest.fixture
def cli(nlp, monkeypatch):
    """Run the CLI in-process, reusing the loaded pipeline (the model loading is tested elsewhere)."""
    loads = []

    def load(model, threshold, gpu_id, speed):
        loads.append(speed)
        return nlp

    monkeypatch.setattr(annotate_cli, "_load", load)

    def invoke(*args):
        return CliRunner().invoke(app, ["annotate", *map(str, args), "--no-progress"], terminal_width=200)

    invoke.loads = loads
    return invoke


def test_speed_options_reach_the_pipeline(tmp_path, model, cli):
    (tmp_path / "in.txt").write_text("i feel so happy\n", encoding="utf8")
    assert cli(tmp_path / "in.txt", tmp_path / "a.jsonl", "--model", model).exit_code == 0
    assert (
        cli(
            tmp_path / "in.txt", tmp_path / "b.jsonl", "--model", model, "--runtime", "onnx", "--quantize", "int8"
        ).exit_code
        == 0
    )
    assert cli.loads == [{"runtime": "torch", "quantize": "auto"}, {"runtime": "onnx", "quantize": "int8"}]


def flat(result):
    """The CLI's stdout on one line (wasabi wraps messages at 80 columns)."""
    return " ".join(result.stdout.split())


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf8").splitlines()]


def test_txt_to_jsonl(tmp_path, nlp, model, cli):
    lines = texts(7) + ["", "the last line has no newline"]
    (tmp_path / "in.txt").write_text("\n".join(lines), encoding="utf8")
    result = cli(tmp_path / "in.txt", tmp_path / "out.jsonl", "--model", model, "--batch-size", "3")
    assert result.exit_code == 0, result.output
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [r["line"] for r in rows] == list(range(1, len(lines) + 1))
    for row, expected in zip(rows, classify(nlp, lines)):
        assert list(row) == ["line", "emotion", "score", "cats"]
        assert list(row["cats"]) == list(LABELS)
        assert row["emotion"] == expected["emotion"]
        assert row["cats"] == pytest.approx(expected["cats"], abs=1e-5)
    assert rows[7]["emotion"] is None  # the empty line is a row without emotion
    assert not default_errors_path(tmp_path / "out.jsonl").exists()
    assert not checkpoint_path(tmp_path / "out.jsonl").exists()
    assert f"{len(lines)} rows annotated" in flat(result)


def test_jsonl_to_csv_with_sentences_and_custom_fields(tmp_path, nlp, model, cli):
    items = [{"doc": f"d{i}", "body": t} for i, t in enumerate(texts(5))]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(x) + "\n" for x in items), encoding="utf8")
    result = cli(
        tmp_path / "in.jsonl",
        tmp_path / "out.csv",
        "--model",
        model,
        "--text-field",
        "body",
        "--id-field",
        "doc",
        "--sentences",
    )
    assert result.exit_code == 0, result.output
    with (tmp_path / "out.csv").open(encoding="utf8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["line", "id", "emotion", "score", *LABELS, "sentences"]
    assert [r["id"] for r in rows] == [x["doc"] for x in items]
    assert [r["line"] for r in rows] == ["1", "2", "3", "4", "5"]
    for row, expected in zip(rows, classify(nlp, [x["body"] for x in items], sentences=True)):
        assert row["emotion"] == expected["emotion"]
        assert [float(row[label]) for label in LABELS] == pytest.approx([expected["cats"][l] for l in LABELS], abs=1e-5)
        assert [s["text"] for s in json.loads(row["sentences"])] == [s["text"] for s in expected["sentences"]]


def test_csv_to_jsonl(tmp_path, nlp, model, cli):
    # a BOM, a quoted field over two lines, a blank line, extra columns
    content = '\ufeffid,text,extra\n7,"i am happy\nand glad",x\n\n8,i am scared,y\n9,"i am sad, very sad",z\n'
    (tmp_path / "in.csv").write_text(content, encoding="utf8")
    result = cli(tmp_path / "in.csv", tmp_path / "out.jsonl", "--model", model)
    assert result.exit_code == 0, result.output
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [(r["line"], r["id"]) for r in rows] == [(2, "7"), (5, "8"), (6, "9")]
    expected = list(classify(nlp, ["i am happy\nand glad", "i am scared", "i am sad, very sad"]))
    assert [r["emotion"] for r in rows] == [e["emotion"] for e in expected]
    assert "1 blank line skipped" in flat(result)


def test_bad_rows_go_to_the_errors_file(tmp_path, model, cli):
    lines = [
        b'{"id": 1, "text": "i am happy"}',
        b'{"id": 2, "text": 42}',
        b'{"id": 3, "text": "unterminated',
        b'["a", "list"]',
        b'{"id": 5, "title": "no text field"}',
        b'{"id": 6, "text": "caf\xe9 latin-1"}',
        b'{"id": 7, "text": null}',
        b'{"id": 8, "text": "i am sad"}',
    ]
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    result = cli(tmp_path / "in.jsonl", tmp_path / "out.jsonl", "--model", model, "--batch-size", "3")
    assert result.exit_code == 1, result.output
    assert "6 of 8 rows failed" in flat(result)
    assert [(r["line"], r["id"]) for r in read_jsonl(tmp_path / "out.jsonl")] == [(1, 1), (8, 8)]
    errors = read_jsonl(tmp_path / "out.errors.jsonl")
    assert [(e["line"], e["id"]) for e in errors] == [(2, 2), (3, None), (4, None), (5, 5), (6, None), (7, 7)]
    reasons = [e["reason"] for e in errors]
    assert "not text (got int)" in reasons[0] and "invalid JSON" in reasons[1] and "not a JSON object" in reasons[2]
    assert "missing field 'text'" in reasons[3] and "UTF-8" in reasons[4] and "not text (got NoneType)" in reasons[5]


def test_bad_rows_in_txt_and_csv(tmp_path, model, cli):
    (tmp_path / "in.txt").write_bytes(b"i am glad\n\xff\xfe broken\ni am sad\n")
    result = cli(tmp_path / "in.txt", tmp_path / "out.csv", "--model", model, "--errors", tmp_path / "bad.jsonl")
    assert result.exit_code == 1
    assert [e["line"] for e in read_jsonl(tmp_path / "bad.jsonl")] == [2]
    (tmp_path / "in.csv").write_text("id,text\n1,i am glad\n2\n3,i am sad\n", encoding="utf8")
    result = cli(tmp_path / "in.csv", tmp_path / "out2.jsonl", "--model", model)
    assert result.exit_code == 1
    assert [
        (e["line"], e["id"], "missing column" in e["reason"]) for e in read_jsonl(tmp_path / "out2.errors.jsonl")
    ] == [(3, "2", True)]
    assert [r["line"] for r in read_jsonl(tmp_path / "out2.jsonl")] == [2, 4]


def test_a_csv_quote_never_closed_is_one_error_row_not_the_rest_of_the_file(tmp_path, model, cli):
    (tmp_path / "in.csv").write_text(
        'id,text\n1,i am glad\n2,"i am sad\n3,i am scared\n4,i am angry\n', encoding="utf8"
    )
    result = cli(tmp_path / "in.csv", tmp_path / "out.jsonl", "--model", model)
    assert result.exit_code == 1, result.output
    assert [(r["line"], r["id"]) for r in read_jsonl(tmp_path / "out.jsonl")] == [(2, "1"), (4, "3"), (5, "4")]
    errors = read_jsonl(tmp_path / "out.errors.jsonl")
    assert [(e["line"], e["id"]) for e in errors] == [(3, "2")] and "left open" in errors[0]["reason"]


@pytest.mark.parametrize(
    "content,expected",
    [
        # closed only by a stray quote three lines on: without the check, lines 3-6 were one text
        (
            'id,text\n1,ok\n2,"i am sad\n3,i am scared\n4,he said "hi" to me\n5,i am angry\n',
            [(2, "ok"), (3, None), (4, "i am scared"), (5, 'he said "hi" to me'), (6, "i am angry")],
        ),
        ('id,text\n1,ok\n2,"open at the end\n', [(2, "ok"), (3, None)]),  # the last line, left open
        (
            'id,text\n1,a"b\n2,"a"b\n3,"multi\nline"\n4,c\n',
            [(2, 'a"b'), (3, "ab"), (4, "multi\nline"), (6, "c")],
        ),  # csv.reader's reading
    ],
)
def test_csv_quotes_left_open_are_error_rows(tmp_path, content, expected):
    path = tmp_path / "in.csv"
    path.write_text(content, encoding="utf8")
    rows = list(RowReader(path, "csv").rows())
    assert [(r.line, r.text) for r in rows] == expected
    assert [r.error is not None for r in rows] == [text is None for _, text in expected]


def test_a_csv_reader_resumed_after_an_unclosed_quote_goes_on_after_its_line(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('id,text\n1,"a\nb"\n2,"open\n3,c\n', encoding="utf8")
    reader = RowReader(path, "csv")
    seen = [(row.line, row.text, row.error is None, reader.offset, reader.line) for row in reader.rows()]
    assert [s[:3] for s in seen] == [(2, "a\nb", True), (4, None, False), (5, "c", True)]
    again = RowReader(path, "csv")  # a checkpoint taken just after the error row
    assert [(r.line, r.text) for r in again.rows(seen[1][3], seen[1][4])] == [(5, "c")]


def test_the_output_folder_is_created(tmp_path, model, cli):
    (tmp_path / "in.txt").write_text("i feel so happy\n", encoding="utf8")
    result = cli(tmp_path / "in.txt", tmp_path / "new" / "dir" / "out.jsonl", "--model", model)
    assert result.exit_code == 0, result.output
    assert len(read_jsonl(tmp_path / "new" / "dir" / "out.jsonl")) == 1


@pytest.mark.parametrize(
    "name,content,extra,message",
    [
        ("in.xml", "<a/>", [], "Unsupported input"),
        ("in.csv", "id,body\n1,x\n", [], "no column 'text'"),
        ("in.csv", "", [], "needs a header"),
        ("in.jsonl", "{}\n", ["--text-column", "body"], "--text-column is for .csv"),
    ],
)
def test_bad_jobs_exit_2(tmp_path, model, cli, name, content, extra, message):
    (tmp_path / name).write_text(content, encoding="utf8")
    result = cli(tmp_path / name, tmp_path / "out.jsonl", "--model", model, *extra)
    assert result.exit_code == 2
    assert message in flat(result)
    assert not (tmp_path / "out.jsonl").exists()


def test_missing_input_and_bad_output_suffix(tmp_path, model, cli):
    assert cli(tmp_path / "nope.txt", tmp_path / "out.jsonl", "--model", model).exit_code == 2
    (tmp_path / "in.txt").write_text("a\n", encoding="utf8")
    result = cli(tmp_path / "in.txt", tmp_path / "out.parquet", "--model", model)
    assert result.exit_code == 2 and "Unsupported output" in flat(result)


def test_finished_output_needs_overwrite(tmp_path, model, cli):
    (tmp_path / "in.txt").write_text("i am glad\ni am sad\n", encoding="utf8")
    assert cli(tmp_path / "in.txt", tmp_path / "out.jsonl", "--model", model).exit_code == 0
    result = cli(tmp_path / "in.txt", tmp_path / "out.jsonl", "--model", model)
    assert result.exit_code == 2 and "--overwrite" in flat(result)
    (tmp_path / "in.txt").write_text("i am glad\n", encoding="utf8")
    assert cli(tmp_path / "in.txt", tmp_path / "out.jsonl", "--model", model, "--overwrite").exit_code == 0
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 1


def test_model_that_cannot_load_exits_2(tmp_path):
    (tmp_path / "in.txt").write_text("a\n", encoding="utf8")
    result = CliRunner().invoke(
        app, ["annotate", str(tmp_path / "in.txt"), str(tmp_path / "o.jsonl"), "--model", str(tmp_path / "none")]
    )
    assert result.exit_code == 2 and "Can't load the emotion model" in flat(result)


# ---- resuming ----------------------------------------------------------------


class Stop(KeyboardInterrupt):
    pass


def interrupt_after(n_chunks):
    seen = []

    def on_chunk(progress):
        seen.append(progress.rows)
        if len(seen) == n_chunks:
            raise Stop()

    return on_chunk


@pytest.mark.parametrize("out_name", ["out.jsonl", "out.csv"])
def test_resume_after_interrupt_and_torn_write(tmp_path, nlp, model, out_name):
    lines = texts(23)
    lines[5] = '{"broken'  # a failing row too (jsonl input)
    data = "".join((json.dumps({"id": i, "text": t}) if i != 5 else t) + "\n" for i, t in enumerate(lines))
    (tmp_path / "in.jsonl").write_text(data, encoding="utf8")
    ref = Job(tmp_path / "in.jsonl", tmp_path / ("ref_" + out_name), model=model, batch_size=4)
    annotate(ref, nlp, progress_bar=False)

    job = Job(tmp_path / "in.jsonl", tmp_path / out_name, model=model, batch_size=4)
    with pytest.raises(Stop):
        annotate(job, nlp, progress_bar=False, on_chunk=interrupt_after(2))
    saved = json.loads(job.checkpoint.read_text())["progress"]
    assert saved["rows"] == 8 and saved["failed"] == 1
    # a crash after writing lines the checkpoint doesn't know about, the last one half-written
    with job.output.open("ab") as fh:
        fh.write(job.output.read_bytes().splitlines(keepends=True)[-1] + b'{"line": 9, "emo')
    with job.errors.open("ab") as fh:
        fh.write(b'{"line": 99, "rea')
    assert check_job(job).rows == 8
    summary = annotate(job, nlp, progress_bar=False)
    assert (summary.rows, summary.annotated, summary.failed, summary.resumed_at_row) == (23, 22, 1, 8)
    assert job.output.read_bytes() == ref.output.read_bytes()
    assert job.errors.read_bytes() == ref.errors.read_bytes()
    assert not job.checkpoint.exists()


def test_checkpoint_for_other_settings_or_input_is_refused(tmp_path, nlp, model):
    (tmp_path / "in.txt").write_text("\n".join(texts(10)) + "\n", encoding="utf8")
    job = Job(tmp_path / "in.txt", tmp_path / "out.jsonl", model=model, batch_size=2)
    with pytest.raises(Stop):
        annotate(job, nlp, progress_bar=False, on_chunk=interrupt_after(1))
    other = Job(tmp_path / "in.txt", tmp_path / "out.jsonl", model=model, batch_size=2, sentences=True)
    with pytest.raises(AnnotateError, match="different sentences"):
        check_job(other)
    assert check_job(other, overwrite=True) is None
    with (tmp_path / "in.txt").open("a", encoding="utf8") as fh:
        fh.write("one more line\n")
    with pytest.raises(AnnotateError, match="input_size"):
        check_job(job)


def test_output_shorter_than_the_checkpoint_is_refused(tmp_path, nlp, model):
    (tmp_path / "in.txt").write_text("\n".join(texts(6)) + "\n", encoding="utf8")
    job = Job(tmp_path / "in.txt", tmp_path / "out.jsonl", model=model, batch_size=2)
    with pytest.raises(Stop):
        annotate(job, nlp, progress_bar=False, on_chunk=interrupt_after(2))
    job.output.write_bytes(job.output.read_bytes()[:10])
    with pytest.raises(AnnotateError, match="shorter"):
        check_job(job)


SLOW_CHILD = """
import sys, time
import spacy_emotion.serving.annotate_files as annotate_module
real = annotate_module.classify
def slow(*args, **kwargs):  # a slow model: the kill lands mid-run
    time.sleep(0.4)
    return real(*args, **kwargs)
annotate_module.classify = slow
from spacy_emotion.cli import app
app(sys.argv[1:], prog_name="spacy-emotion")
"""


def test_resume_after_kill_9(tmp_path, nlp, model, cli):
    lines = texts(40)
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf8")
    ref = Job(tmp_path / "in.txt", tmp_path / "ref.jsonl", model=model, batch_size=5)
    annotate(ref, nlp, progress_bar=False)
    out = tmp_path / "out.jsonl"
    args = ["annotate", str(tmp_path / "in.txt"), str(out), "--model", model, "--batch-size", "5", "--no-progress"]
    with (tmp_path / "child.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, "-c", SLOW_CHILD, *args], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while not (out.exists() and out.read_bytes().count(b"\n") >= 5):
                assert proc.poll() is None, (tmp_path / "child.log").read_text()
                assert time.monotonic() < deadline, "no output from the child"
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    written = out.read_bytes().count(b"\n")
    assert 5 <= written < len(lines)
    assert checkpoint_path(out).exists()
    result = cli(*args[1:-1])  # the same command again
    assert result.exit_code == 0, result.output
    assert "Resuming after row" in flat(result)
    assert out.read_bytes() == ref.output.read_bytes()
    assert [r["line"] for r in read_jsonl(out)] == list(range(1, len(lines) + 1))


# ---- streaming -----------------------------------------------------------------


def test_reader_memory_is_constant(tmp_path):
    path = tmp_path / "big.jsonl"
    line = json.dumps({"id": 0, "text": "i feel happy today " * 10}) + "\n"
    with path.open("w", encoding="utf8") as fh:
        for _ in range(20_000):  # ~4 MB
            fh.write(line)
    reader = RowReader(path, "jsonl")
    tracemalloc.start()
    n = sum(1 for _ in reader.rows())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert n == 20_000 and reader.offset == os.path.getsize(path) and reader.line == 20_000
    assert peak < 512 * 1024, f"reading a {os.path.getsize(path):,} byte file peaked at {peak:,} bytes"


def test_reader_restarts_at_an_offset(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('id,text\n1,"a\nb"\n2,c\n\n3,d\n', encoding="utf8")
    reader = RowReader(path, "csv")
    rows = []
    for row in reader.rows():
        rows.append((row.line, row.id, row.text, reader.offset, reader.line))
    assert [r[:3] for r in rows] == [(2, "1", "a\nb"), (4, "2", "c"), (6, "3", "d")]
    again = RowReader(path, "csv")
    assert [(r.line, r.text) for r in again.rows(rows[0][3], rows[0][4])] == [(4, "c"), (6, "d")]
