"""benchmarks/load_test.py: a smoke run on loopback, loopback-only, errors counted."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from live_server import serving

from spacy_emotion.serving.classify import build_pipeline
from spacy_emotion.serving.rest import create_app

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "load_test.py"


@pytest.fixture(scope="module")
def nlp(trained_pipeline):
    return build_pipeline(str(trained_pipeline))


def run_script(*args, timeout=300):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("batching", [True, False])
def test_smoke_run(nlp, tmp_path, batching):
    app = create_app(nlp, batching=batching)
    with serving(app) as url:
        proc = run_script(
            "--url", url, "--requests", "60", "--concurrency", "8", "--json", str(tmp_path / "r.json"), "--markdown"
        )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    (result,) = json.loads((tmp_path / "r.json").read_text())
    assert (result["requests"], result["ok"], result["errors"], result["shed"], result["timed_out"]) == (
        60,
        60,
        0,
        0,
        False,
    )
    assert result["batching"] is batching
    assert 0 < result["p50_ms"]
    assert result["requests_per_s"] > 0
    assert app.state.batcher.stats["requests"] >= 60 + 8  # the measured requests and the warm-up
    if not batching:
        assert result["mean_texts_per_model_call"] == 1.0
    assert "| mode |" in proc.stdout


def test_failed_requests_are_counted_and_fail_the_run(nlp):
    app = create_app(nlp, max_chars=5)  # every load-test text is longer: 413
    with serving(app) as url:
        proc = run_script("--url", url, "--requests", "20", "--concurrency", "4")
    assert proc.returncode == 1
    result = json.loads(proc.stdout.splitlines()[0])
    assert result["errors"] == 20 and result["ok"] == 0
    assert result["error_samples"][0].startswith("413")


def test_shed_requests_are_counted_apart_from_errors(hf_checkpoint, tmp_path):
    app = create_app(build_pipeline(str(hf_checkpoint)))
    app.state.batcher.max_queue = 0  # every request finds the queue full: 503 with Retry-After
    with serving(app) as url:
        proc = run_script("--url", url, "--requests", "20", "--concurrency", "4", "--record", str(tmp_path / "run"))
    assert proc.returncode == 1
    result = json.loads(proc.stdout.splitlines()[0])
    assert (result["ok"], result["errors"], result["shed"]) == (0, 0, 20)
    record = json.loads((tmp_path / "run" / "load_test.json").read_text())
    assert record["results"] == [result] and record["command"].startswith("python benchmarks/load_test.py --url")
    assert {"date", "commit", "machine"} <= set(record) and record["machine"]["cpu_count"] >= 1
    assert "| shed (503) |" in (tmp_path / "run" / "load_test.md").read_text()


def test_a_timed_out_run_fails_and_reports_no_batch_figure(nlp, tmp_path):
    app = create_app(nlp)
    with serving(app) as url:
        proc = run_script(
            "--url",
            url,
            "--requests",
            "100000",
            "--concurrency",
            "4",
            "--timeout",
            "0.5",
            "--json",
            str(tmp_path / "r.json"),
        )
    assert proc.returncode == 1
    (result,) = json.loads((tmp_path / "r.json").read_text())
    assert result["timed_out"] is True and result["ok"] < 100000
    assert result["mean_texts_per_model_call"] is None  # no counters read after a timeout


@pytest.mark.parametrize("url", ["http://10.1.2.3:8000", "http://example.com", "ftp://127.0.0.1:21"])
def test_only_loopback(url):
    proc = run_script("--url", url, "--requests", "1", timeout=60)
    assert proc.returncode == 2
    assert "only targets" in proc.stderr
