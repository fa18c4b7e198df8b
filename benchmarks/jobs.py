"""Jobs: each system, speed setting or trainer is measured in a fresh process
of its own (`python -m benchmarks.jobs JOB.json`), so that its load time and
peak RSS are its own. The parent process writes the job file, waits, and reads
the result file the job writes next to it.
"""

import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

from benchmarks.measure import log, n_words, peak_rss_mb, percentile, rss_curve, rss_mb, stream_order, time_split
from benchmarks.systems import LABELS, SYSTEMS, import_libraries, load_runner
from benchmarks.training_speed import run_spacy_train_job, run_torch_train_job

ROOT = Path(__file__).resolve().parent.parent


def run_inference_job(job: Dict[str, Any]) -> Dict[str, Any]:
    """Load one system and measure it: throughput on the test texts, where A's
    time goes, single-text latency, and throughput and RSS over the stream.

    job (Dict[str, Any]): the system, its options and the sizes.
    RETURNS (Dict[str, Any]): its metrics, and its predictions on the test texts.
    """
    name = job["name"]
    t0 = time.perf_counter()
    import_libraries(job["system"])
    import_s = time.perf_counter() - t0
    import torch

    if job["device"] == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss_before = rss_mb()
    t0 = time.perf_counter()
    runner = load_runner(job)
    load_s = time.perf_counter() - t0
    rss_after_load = rss_mb()
    log(name, f"loaded in {load_s:.2f} s (RSS {rss_after_load:.0f} MB)")
    texts = json.loads(Path(job["data"]).read_text(encoding="utf8"))["texts"]
    words = n_words(texts)

    # throughput on the test texts: a warm-up on the first 256 (kernels, allocator, length
    # buckets' shapes), then the median of the repeats over all of them
    runner.run(texts[: min(len(texts), 256)])
    runs: List[float] = []
    predictions: List[str] = []
    for rep in range(job["repeats"]):
        t0 = time.perf_counter()
        predictions = runner.run(texts)
        runs.append(time.perf_counter() - t0)
        log(name, f"test run {rep + 1}/{job['repeats']}: {len(texts) / runs[-1]:.1f} docs/s")
    median = statistics.median(runs)
    split = time_split(runner, texts, job["device"]) if getattr(runner, "module", None) is not None else None
    result: Dict[str, Any] = {
        "system": job["system"],
        "description": SYSTEMS[job["system"]],
        "options": job.get("options", {}),
        "linear_format": getattr(runner, "linear_format", None),
        # the component's torch_threads holds during its model calls only (restored after)
        "torch_threads": int(job.get("options", {}).get("torch_threads") or 0) or torch.get_num_threads(),
        "import_s": import_s,
        "load_s": load_s,
        "load_rss_mb": rss_after_load - rss_before,
        "test": {
            "docs": len(texts),
            "words": words,
            "repeats": len(runs),
            "runs_s": runs,
            "docs_per_s": len(texts) / median,
            "words_per_s": words / median,
        },
        "predictions": predictions,  # scored by the parent process (no scikit-learn import here)
    }
    if split:
        result["time_split_ms_per_doc"] = split
        log(
            name,
            f"time per doc: {split['total']:.3f} ms, of which the transformer's forward pass {split['forward']:.3f} ms "
            f"({100 * split['forward'] / split['total']:.0f} %), the rest {split['other']:.3f} ms",
        )

    # single-text latency
    if job["latency"]:
        sample = random.Random(1).sample(texts, min(job["latency"], len(texts)))
        runner.one(sample[0])
        times = []
        for text in sample:
            t0 = time.perf_counter()
            runner.one(text)
            times.append((time.perf_counter() - t0) * 1000)
        result["latency_ms"] = {
            "n": len(times),
            "p50": percentile(times, 50),
            "p95": percentile(times, 95),
            "mean": statistics.mean(times),
        }
        log(name, f"latency p50 {result['latency_ms']['p50']:.2f} ms, p95 {result['latency_ms']['p95']:.2f} ms")

    # the stream: RSS at rss_from docs and at the end (and every 10 % for the curve)
    n = job["stream"]
    if n:
        order = stream_order(len(texts), n, job["seed"])
        rss_from = job["rss_from"] if job["rss_from"] < n else max(1, n // 10)
        marks = {rss_from, n} | {max(1, n * k // 10) for k in range(1, 10)}
        t0 = time.perf_counter()

        def progress(done: int, rss: float) -> None:
            if done % max(1, n // 10) == 0 or done == n:
                log(name, f"stream {done}/{n} docs, {done / (time.perf_counter() - t0):.1f} docs/s, RSS {rss:.0f} MB")

        curve = rss_curve(runner.stream(texts[i] for i in order), marks, on_mark=progress)
        seconds = time.perf_counter() - t0
        stream_words = sum(len(texts[i].split()) for i in order)
        result["stream"] = {
            "docs": n,
            "seconds": seconds,
            "docs_per_s": n / seconds,
            "words_per_s": stream_words / seconds,
            "rss_from_docs": rss_from,
            "rss_to_docs": n,
            "rss_from_mb": curve[rss_from],
            "rss_to_mb": curve[n],
            "rss_growth_pct": 100 * (curve[n] - curve[rss_from]) / curve[rss_from],
            "rss_curve_mb": {str(k): v for k, v in sorted(curve.items())},
        }
    result["peak_rss_mb"] = peak_rss_mb()
    if job["device"] == "cuda":
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def worker(job_file: Path) -> None:
    """Run one job from its JSON file and write its result where the job says ("out").

    job_file (Path): the job, as run_job writes it.
    """
    job = json.loads(Path(job_file).read_text(encoding="utf8"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    kind = job["kind"]
    if job.get("threads"):
        import torch

        torch.set_num_threads(job["threads"])
    if kind == "inference":
        result = run_inference_job(job)
    elif kind == "train-spacy":
        result = run_spacy_train_job(job)
    elif kind == "train-torch":
        result = run_torch_train_job(job)
    else:
        raise SystemExit(f"unknown job kind {kind}")
    Path(job["out"]).write_text(json.dumps(result), encoding="utf8")


def run_job(job: Dict[str, Any], work: Path) -> Dict[str, Any]:
    """Run a job in a fresh `python -m benchmarks.jobs` process.

    job (Dict[str, Any]): the job; "name" names its files in `work`.
    work (Path): folder for the job and result files.
    RETURNS (Dict[str, Any]): the job's result.
    """
    job_file = work / f"job-{job['name']}.json"
    job["out"] = str(work / f"result-{job['name']}.json")
    job_file.write_text(json.dumps(job), encoding="utf8")
    log(job["name"], "starting")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.jobs", str(job_file)], cwd=str(ROOT))
    if proc.returncode != 0:
        raise SystemExit(f"{job['name']} failed (exit {proc.returncode}); its output is above")
    return json.loads(Path(job["out"]).read_text(encoding="utf8"))


def score(result: Dict[str, Any], gold: List[str]) -> None:
    """Add test accuracy and macro-F1 of an inference job's predictions.

    result (Dict[str, Any]): a result of run_inference_job; changed in place.
    gold (List[str]): the gold labels of the test texts.
    """
    from sklearn.metrics import accuracy_score, f1_score

    predictions = result["predictions"]
    result["accuracy"] = float(accuracy_score(gold, predictions))
    result["macro_f1"] = float(f1_score(gold, predictions, labels=list(LABELS), average="macro", zero_division=0))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m benchmarks.jobs JOB.json (bench.py writes the job files)")
    worker(Path(sys.argv[1]))
