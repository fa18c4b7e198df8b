"""`spacy-emotion annotate --engine ray` and `annotate_dataset`: the same results
as the single-process engine, bad rows to the errors, reruns after a driver
death, a cluster given by --address, and a worker killed with SIGKILL mid-run."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spacy_emotion.cli import app
from spacy_emotion.labels import LABELS
from spacy_emotion.serving.annotate_files import AnnotateError, Job, annotate
from spacy_emotion.serving.classify import build_pipeline, classify

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")
pa = pytest.importorskip("pyarrow")

from spacy_emotion.serving.annotate_ray import (  # noqa: E402
    RayJob,
    annotate_dataset,
    check_ray_job,
    input_files,
    run_job,
)

ROOT = Path(__file__).resolve().parent.parent
WORDS = ["happy", "sad", "angry", "scared", "amazed", "loving", "glad", "lonely", "furious", "nervous"]


def texts(n, start=0):
    return [f"i feel {WORDS[i % len(WORDS)]} today. number {i} is here." for i in range(start, start + n)]


@pytest.fixture(scope="module")
def model(trained_pipeline):
    return str(trained_pipeline)


@pytest.fixture(scope="module")
def nlp(model):
    return build_pipeline(model)


def write_inputs(folder: Path) -> Path:
    """A folder of every input format, with good rows, bad rows and a blank line."""
    folder.mkdir(parents=True)
    lines = [json.dumps({"id": i, "text": t}).encode() for i, t in enumerate(texts(9))]
    lines[2] = b'{"id": 2, "text": 42}'
    lines[4] = b'{"id": 4, "text": "unterminated'
    lines[6] = b'{"id": 6, "text": "caf\xe9 latin-1"}'
    lines.insert(7, b"")  # a blank line: not a row
    (folder / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (folder / "b.txt").write_text("\n".join(texts(4, 20) + ["", "the end"]) + "\n", encoding="utf8")
    (folder / "c.csv").write_text("id,text\nx1,i am glad\nx2\nx3,i am so sad\n", encoding="utf8")
    sub = folder / "more"
    sub.mkdir()
    pq.write_table(pa.table({"text": texts(3, 40) + [None], "id": [101, 102, 103, 104]}), sub / "d.parquet")
    (folder / "_ignored.txt").write_text("names starting with _ are not input\n", encoding="utf8")
    return folder


def local_reference(tmp_path: Path, folder: Path, model: str, nlp, **settings):
    """What the single-process engine makes of each file: {(source, line): record} and errors."""
    rows, errors = {}, {}
    for name in ("a.jsonl", "b.txt", "c.csv"):
        job = Job(folder / name, tmp_path / "ref" / (name + ".out.jsonl"), model=model, **settings)
        annotate(job, nlp, progress_bar=False)
        rows.update({(name, r["line"]): r for r in read_jsonl(job.output)})
        if job.errors.exists():
            errors.update({(name, e["line"]): e["reason"] for e in read_jsonl(job.errors)})
    sents = settings.get("sentences", False)
    parquet_texts = texts(3, 40)
    for line, result in enumerate(classify(nlp, parquet_texts, sentences=sents), start=1):
        rows[("more/d.parquet", line)] = {"line": line, "id": 100 + line, **result}
    errors[("more/d.parquet", 4)] = "column 'text' is not text (got NoneType)"
    return rows, errors


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf8").splitlines()]


def read_output(folder: Path):
    """The rows of every shard and every error row, each keyed by (source, line), checking each is there once."""
    rows, errors = {}, {}
    for path in sorted(folder.glob("part-*")):
        records = pq.read_table(path).to_pylist() if path.suffix == ".parquet" else read_jsonl(path)
        for r in records:
            assert (r["source"], r["line"]) not in rows, f"{r['source']}:{r['line']} twice"
            rows[(r["source"], r["line"])] = r
    for path in sorted((folder / "_errors").glob("*.jsonl")):
        for e in read_jsonl(path):
            key = (e["source"], e["line"])
            assert key not in errors and key not in rows, f"{key} twice"
            errors[key] = e
    return rows, errors


def assert_same_results(rows, expected):
    assert sorted(rows) == sorted(expected)
    for key, row in rows.items():
        ref = expected[key]
        assert row["emotion"] == ref["emotion"], key
        assert [row[label] for label in LABELS] == pytest.approx([ref["cats"][label] for label in LABELS], abs=1e-5)
        if ref["score"] is None:
            assert row["score"] is None
        else:
            assert row["score"] == pytest.approx(ref["score"], abs=1e-5)


def expected_id(source, ref):
    if source.endswith(".txt"):
        return f"{source}:{ref['line']}"
    return ref["id"] if isinstance(ref["id"], str) else json.dumps(ref["id"])


def flat(result):
    return " ".join(result.stdout.split())


def invoke(*args):
    return CliRunner().invoke(app, ["annotate", *map(str, args), "--no-progress"], terminal_width=200)


# ---- without Ray running --------------------------------------------------------------


def test_without_ray_the_engine_asks_for_the_extra(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    (tmp_path / "in.txt").write_text("a\n", encoding="utf8")
    result = invoke(tmp_path / "in.txt", tmp_path / "out", "--engine", "ray")
    assert result.exit_code == 2
    assert 'pip install "spacy-emotion[ray]"' in flat(result)


@pytest.mark.parametrize(
    "files,extra,message",
    [
        ({}, [], "No input files found"),
        ({"a.txt": "x\n", "notes.md": "x\n"}, [], "notes.md"),
        ({"a.csv": "id,body\n1,x\n"}, [], "no column 'text'"),
        ({"a.txt": "x\n"}, ["--errors", "e.jsonl"], "OUTPUT/_errors"),
        ({"a.txt": "x\n"}, ["--format", "csv"], "Unsupported output format"),
        ({"a.txt": "x\n"}, ["--gpu-id", "0"], "--gpus-per-worker"),
    ],
)
def test_bad_jobs_exit_2_before_ray_starts(tmp_path, files, extra, message):
    folder = tmp_path / "in"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_text(content, encoding="utf8")
    result = invoke(folder, tmp_path / "out", "--engine", "ray", *extra)
    assert result.exit_code == 2, result.output
    assert message in flat(result)
    assert not ray.is_initialized()


def test_ray_options_need_the_ray_engine(tmp_path):
    (tmp_path / "in.txt").write_text("a\n", encoding="utf8")
    result = invoke(tmp_path / "in.txt", tmp_path / "out.jsonl", "--workers", "2")
    assert result.exit_code == 2 and "--workers: for --engine ray only" in flat(result)


def test_input_files_of_a_folder_a_glob_and_a_file(tmp_path):
    folder = write_inputs(tmp_path / "in")
    (folder / ".hidden.jsonl").write_text("{}\n", encoding="utf8")
    names = ["a.jsonl", "b.txt", "c.csv", "more/d.parquet"]
    assert [name for _, name in input_files(str(folder))] == names
    pattern = str(folder / "*.jsonl")
    assert [(path.name, name) for path, name in input_files(pattern)] == [("a.jsonl", pattern[:-7] + "a.jsonl")]
    assert [name for _, name in input_files(str(folder / "b.txt"))] == ["b.txt"]


def test_an_output_folder_of_other_files_is_refused(tmp_path):
    (tmp_path / "in.txt").write_text("a\n", encoding="utf8")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine", encoding="utf8")
    result = invoke(tmp_path / "in.txt", tmp_path / "out", "--engine", "ray")
    assert result.exit_code == 2 and "holds no annotate job" in flat(result)
    assert (tmp_path / "out" / "keep.txt").read_text(encoding="utf8") == "mine"


# ---- a local Ray in this process --------------------------------------------------------


@pytest.fixture(scope="class")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.mark.usefixtures("local_ray")
class TestLocalRay:
    def test_same_results_as_the_local_engine_and_bad_rows_to_errors(self, tmp_path, model, nlp):
        folder = write_inputs(tmp_path / "in")
        expected, expected_errors = local_reference(tmp_path, folder, model, nlp)
        out = tmp_path / "out"
        args = ["--model", model, "--engine", "ray", "--workers", "2", "--shard-rows", "5", "--batch-size", "3"]
        result = invoke(folder, out, *args)
        assert result.exit_code == 1, result.output  # finished, with error rows
        rows, errors = read_output(out)
        assert_same_results(rows, expected)
        assert {key: e["reason"] for key, e in errors.items()} == expected_errors
        for (source, _), row in rows.items():
            assert row["id"] == expected_id(source, expected[(source, row["line"])])
        assert errors[("a.jsonl", 5)]["id"] == "a.jsonl:5"  # bad JSON: no id to read
        assert errors[("c.csv", 3)]["id"] == "x2"
        n_rows = len(expected) + len(expected_errors)
        assert sorted(p.name for p in out.glob("part-*")) == [f"part-{i:05d}.parquet" for i in range(-(-n_rows // 5))]
        summary = json.loads((out / "_SUCCESS").read_text(encoding="utf8"))
        assert (summary["rows"], summary["failed"], summary["blank"]) == (n_rows, len(expected_errors), 1)
        assert f"{len(expected_errors)} of {n_rows} rows failed" in flat(result)
        # Ray's own reader takes the folder as one table (the _ files are left out)
        assert ray.data.read_parquet(str(out)).count() == len(expected)
        again = invoke(folder, out, *args)
        assert again.exit_code == 2 and "finished job" in flat(again)

    def test_jsonl_shards_with_sentences_and_a_threshold(self, tmp_path, model, nlp):
        folder = write_inputs(tmp_path / "in")
        nlp_t = build_pipeline(model, threshold=0.3)
        expected, _ = local_reference(tmp_path, folder, model, nlp_t, sentences=True, threshold=0.3)
        out = tmp_path / "out"
        result = invoke(
            folder, out, "--model", model, "--engine", "ray", "--workers", "1", "--format", "jsonl", "--sentences",
            "--threshold", "0.3",
        )  # fmt: skip
        assert result.exit_code == 1, result.output
        rows, _ = read_output(out)
        assert_same_results(rows, expected)
        assert any(row["emotion"] is None for row in rows.values())  # some below the threshold
        for key, row in rows.items():
            sents = json.loads(row["sentences"])
            assert [(s["text"], s["emotion"]) for s in sents] == [
                (s["text"], s["emotion"]) for s in expected[key]["sentences"]
            ]

    def test_a_rerun_after_the_driver_dies_skips_done_shards_without_duplicates(self, tmp_path, model, nlp):
        folder = write_inputs(tmp_path / "in")
        expected, expected_errors = local_reference(tmp_path, folder, model, nlp)
        job = RayJob(str(folder), tmp_path / "out", model=model, shard_rows=4, rows_per_task=4, workers=1)

        class DriverDied(Exception):
            pass

        written = []

        def die_after_two(index):
            written.append(index)
            if len(written) == 2:
                raise DriverDied()

        with pytest.raises(DriverDied):
            run_job(job, progress_bar=False, on_shard=die_after_two)
        done = sorted(p.name for p in job.output.glob("part-*"))
        assert len(done) == 2 and not (job.output / "_SUCCESS").exists()
        (job.output / ".part-00005.parquet.tmp").write_bytes(b"torn")  # a write the crash cut short
        other = RayJob(str(folder), tmp_path / "out", model=model, shard_rows=4, threshold=0.5)
        with pytest.raises(AnnotateError, match="different threshold"):
            check_ray_job(other)
        summary = run_job(job, progress_bar=False)
        assert summary.skipped_shards == 2 and summary.shards == -(-(len(expected) + len(expected_errors)) // 4)
        rows, errors = read_output(job.output)
        assert_same_results(rows, expected)
        assert {key: e["reason"] for key, e in errors.items()} == expected_errors
        with pytest.raises(AnnotateError, match="finished job"):
            check_ray_job(job)
        summary = run_job(job, progress_bar=False, overwrite=True)
        assert summary.skipped_shards == 0 and read_output(job.output)[0].keys() == rows.keys()

    def test_annotate_dataset(self, model, nlp):
        items = [{"text": t, "n": i} for i, t in enumerate(texts(6))] + [{"text": None, "n": 6}]
        ds = annotate_dataset(ray.data.from_items(items), model, rows_per_task=3, workers=1)
        out = sorted(ds.take_all(), key=lambda r: r["n"])
        assert [r["n"] for r in out] == list(range(7)) and out[0]["text"] == items[0]["text"]
        for row, ref in zip(out, classify(nlp, texts(6))):
            assert row["error"] is None and row["emotion"] == ref["emotion"]
            assert [row[label] for label in LABELS] == pytest.approx([ref["cats"][label] for label in LABELS], abs=1e-5)
        assert out[6]["emotion"] is None and out[6]["error"] == "column 'text' is not text (got NoneType)"


# ---- a cluster started with `ray start --head` ----------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def session_pids(sid: int):
    """The processes of session `sid` (the `ray start` we launched and all it started)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid:
                pids.append(int(entry.name))
    return pids


def cluster_env(**extra):
    env = dict(os.environ, RAY_AUTH_MODE="token", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    return env


@pytest.fixture(scope="class")
def cluster():
    """A one-node cluster on loopback (`ray start --head --block` in a session of its own),
    stopped by ending the processes of its own process group (`ray stop` would stop every Ray of this user)."""
    port = free_port()
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths have a length limit
    cmd = [
        str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}",
        "--num-cpus=2", "--include-dashboard=false", "--node-ip-address=127.0.0.1",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--temp-dir={temp}",
    ]  # fmt: skip
    log = open(Path(temp) / "start.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=cluster_env(), start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while "Ray runtime started" not in (Path(temp) / "start.log").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, (Path(temp) / "start.log").read_text()
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # `ray start --block` stops what it started
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for pid in session_pids(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


DRIVER = """
import sys, ray
ray.init(address=sys.argv[1], runtime_env={
    "worker_process_setup_hook": "ray_slow_worker.install",
    "env_vars": {"SPACY_EMOTION_TEST_PIDS": sys.argv[2]},
})
from spacy_emotion.cli import app
app(["annotate", *sys.argv[3:]], prog_name="spacy-emotion")
"""


class TestCluster:
    def test_a_cluster_given_by_address(self, cluster, tmp_path, model, nlp):
        folder = write_inputs(tmp_path / "in")
        expected, expected_errors = local_reference(tmp_path, folder, model, nlp)
        out = tmp_path / "out"
        args = [str(folder), str(out), "--model", model, "--engine", "ray", "--address", cluster, "--no-progress"]
        proc = subprocess.run(
            [sys.executable, "-m", "spacy_emotion", "annotate", *args],
            env=cluster_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 1, proc.stdout + proc.stderr
        rows, errors = read_output(out)
        assert_same_results(rows, expected)
        assert {key: e["reason"] for key, e in errors.items()} == expected_errors

    def test_a_worker_killed_mid_run_loses_and_repeats_no_row(self, cluster, tmp_path, model, nlp):
        folder = tmp_path / "in"
        folder.mkdir()
        lines = [json.dumps({"id": i, "text": t}) for i, t in enumerate(texts(48))]
        lines[13] = '{"id": 13, "text": null}'
        (folder / "in.jsonl").write_text("\n".join(lines) + "\n", encoding="utf8")
        ref = Job(folder / "in.jsonl", tmp_path / "ref.jsonl", model=model)
        annotate(ref, nlp, progress_bar=False)
        expected = {("in.jsonl", r["line"]): r for r in read_jsonl(ref.output)}
        pids, out = tmp_path / "pids", tmp_path / "out"
        pids.mkdir()
        args = [str(folder), str(out), "--model", model, "--engine", "ray", "--address", cluster]
        args += ["--workers", "1", "--shard-rows", "4", "--no-progress"]
        with (tmp_path / "driver.log").open("w") as log:
            driver = subprocess.Popen(
                [sys.executable, "-c", DRIVER, cluster, str(pids), *args],
                env=cluster_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                deadline = time.monotonic() + 300
                while not (list(pids.iterdir()) and list(out.glob("part-*.parquet"))):
                    assert driver.poll() is None, (tmp_path / "driver.log").read_text()
                    assert time.monotonic() < deadline, "no worker output"
                    time.sleep(0.05)
                victim = int(next(pids.iterdir()).name)
                os.kill(victim, signal.SIGKILL)
                written_at_kill = len(list(out.glob("part-*.parquet")))
                driver.wait(timeout=300)
            finally:
                if driver.poll() is None:
                    driver.kill()
                    driver.wait()
        assert driver.returncode == 1, (tmp_path / "driver.log").read_text()  # one error row
        assert written_at_kill < 12  # the kill landed with shards still to do
        assert len(list(pids.iterdir())) >= 2  # a new worker process took over
        rows, errors = read_output(out)
        assert_same_results(rows, expected)
        assert list(errors) == [("in.jsonl", 14)]
        assert len(rows) + len(errors) == 48
