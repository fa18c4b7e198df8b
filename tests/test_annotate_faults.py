"""`spacy-emotion annotate` when writing fails: a full disk or a file-size
limit mid-run stops it with one line (exit code 3), the rows up to the last
checkpoint stay, and the same command run again finishes with exactly the
bytes of an uninterrupted run. An output it can't write is refused before
the model loads."""

import errno
import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import spacy_emotion.serving.annotate_files as annotate_files
from spacy_emotion.cli import annotate as annotate_cli
from spacy_emotion.cli import app
from spacy_emotion.serving.annotate_files import AnnotateError, Job, annotate, check_job, checkpoint_path
from spacy_emotion.serving.classify import build_pipeline

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")

WORDS = ["happy", "sad", "angry", "scared", "amazed", "loving", "glad", "lonely"]
N_TEXTS, BATCH = 40, 5


@pytest.fixture(scope="module")
def model(hf_checkpoint):
    return str(hf_checkpoint)


@pytest.fixture(scope="module")
def nlp(model):
    return build_pipeline(model)


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("".join(f"i feel {WORDS[i % len(WORDS)]} today, number {i}\n" for i in range(N_TEXTS)))
    return path


@pytest.fixture
def clean(tmp_path, source, model, nlp):
    """The output of an uninterrupted run."""
    job = Job(source, tmp_path / "clean" / "out.jsonl", model=model, batch_size=BATCH)
    annotate(job, nlp, progress_bar=False)
    return job.output.read_bytes()


@pytest.fixture
def cli(nlp, monkeypatch):
    """The CLI in-process with the loaded pipeline; `cli.loads` counts model loads."""
    loads = []

    def load(*args):
        loads.append(args)
        return nlp

    monkeypatch.setattr(annotate_cli, "_load", load)

    def invoke(*args):
        return CliRunner().invoke(app, ["annotate", *map(str, args), "--no-progress"], terminal_width=200)

    invoke.loads = loads
    return invoke


def one_line_failure(result, *words):
    """The run stopped with exit code 3 and one message (wasabi wraps it at 80 columns), no traceback."""
    assert result.exit_code == 3, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    plain = re.sub(r"\x1b\[[0-9;]*m", "", result.output).strip()
    assert plain.count("✘") == 1 and plain.startswith("✘"), result.output
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert "run the same command again to resume" in text
    for word in words:
        assert word in text


def kept_up_to_checkpoint(output: Path, clean: bytes) -> int:
    """The output's checkpointed part is the clean run's beginning; RETURNS the rows in it."""
    saved = json.loads(checkpoint_path(output).read_text())["progress"]
    assert 0 < saved["rows"] < N_TEXTS
    assert output.read_bytes()[: saved["output_bytes"]] == clean[: saved["output_bytes"]]
    assert clean[: saved["output_bytes"]].count(b"\n") == saved["rows"]
    return saved["rows"]


def test_a_full_disk_mid_run_stops_cleanly_and_the_rerun_completes(tmp_path, source, model, clean, cli, monkeypatch):
    out = tmp_path / "out.jsonl"
    real_fsync = os.fsync
    output_syncs = []

    def fsync(fd):  # the disk fills up during the third chunk: its lines are written, their fsync fails
        if os.readlink(f"/proc/self/fd/{fd}") == str(out.resolve()):
            output_syncs.append(fd)
            if len(output_syncs) == 3:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(annotate_files.os, "fsync", fsync)
    args = (source, out, "--model", model, "--batch-size", BATCH)
    one_line_failure(cli(*args), f"Can't write {out}", "No space left on device")
    assert kept_up_to_checkpoint(out, clean) == 2 * BATCH
    assert out.read_bytes().count(b"\n") == 3 * BATCH  # the unsynced chunk is there, past the checkpoint

    monkeypatch.setattr(annotate_files.os, "fsync", real_fsync)
    result = cli(*args)
    assert result.exit_code == 0 and "Resuming after row 10" in " ".join(result.output.split()), result.output
    assert out.read_bytes() == clean
    assert not checkpoint_path(out).exists()


def limited(max_bytes: int):
    def set_limit():  # Python ignores SIGXFSZ from its start: a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, resource.RLIM_INFINITY))

    return set_limit


def test_a_file_size_limit_mid_run_stops_cleanly_and_the_rerun_completes(tmp_path, source, model, clean, cli):
    out = tmp_path / "out.jsonl"
    args = [source, out, "--model", model, "--batch-size", BATCH]
    limit = len(clean) // 2 + 7  # mid-line, mid-chunk
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "spacy_emotion", "annotate", *map(str, args), "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=limited(limit),
        timeout=600,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    message = " ".join(proc.stdout.split())
    assert f"Can't write {out}: File too large" in message and "run the same command again" in message
    assert out.stat().st_size == limit  # the write went as far as the limit and stopped mid-line
    assert kept_up_to_checkpoint(out, clean) % BATCH == 0

    result = cli(*args)  # the limit lifted
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == clean


@pytest.mark.parametrize("where", ["under a file", "a folder"])
def test_an_output_that_cannot_be_written_is_refused_before_the_model_loads(tmp_path, source, model, cli, where):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "new" / "out.jsonl" if where == "under a file" else tmp_path / "folder.jsonl"
    if where == "a folder":
        out.mkdir()
    result = cli(source, out, "--model", model)
    assert result.exit_code == 2, result.output
    assert ("is a file" if where == "under a file" else "is a folder") in " ".join(result.output.split())
    assert cli.loads == []
    assert not checkpoint_path(out).exists()


def test_the_errors_file_is_checked_too(tmp_path, source, model):
    (tmp_path / "file").write_text("x")
    job = Job(source, tmp_path / "out.jsonl", model=model, errors=tmp_path / "file" / "errors.jsonl")
    with pytest.raises(AnnotateError, match="is a file"):
        check_job(job)


@pytest.mark.skipif(os.geteuid() == 0, reason="permissions don't apply to root")
def test_a_read_only_folder_is_refused(tmp_path, source, model):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    try:
        with pytest.raises(AnnotateError, match="no permission"):
            check_job(Job(source, folder / "out.jsonl", model=model))
    finally:
        folder.chmod(0o700)
