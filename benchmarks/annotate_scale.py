"""`spacy-emotion annotate` on one process against the Ray engine: docs/s and Ray's cost per row.

The input is N texts (the dair-ai/emotion validation and test texts, repeated
in order) in one .jsonl file. The script annotates it

  model     the model alone: `classify.classify` over the texts in memory,
            no reading, writing or checkpoints (the floor for both engines)
  local     the single-process engine (`annotate_files.annotate`), torch
            limited to one thread, as one Ray worker is
  ray-W     the Ray engine (`annotate_ray.run_job`) with W workers on a local
            Ray started by this script with as many CPUs as the machine has

and reports for each the wall time of the job (for local: loading the model
and annotating; for Ray: starting the workers, which load the model, and
annotating; Ray's own start is reported apart), docs/s, and whether every
label equals the local run's. Ray's cost per row is (Ray time at 1 worker -
local time) / N: what the driver's reading and sharding, moving rows to and
from the worker and writing Parquet add to each row, plus starting the worker
spread over the rows. To tell the two apart, Ray with 1 worker also annotates
the first N/10 texts: the slope between the two runs is Ray's time per row
without the start, and the start is what remains.

    python benchmarks/annotate_scale.py --model training/bow/model-best \\
        --data ../shared/data/emotion --out benchmarks/runs/annotate-scale

writes annotate_scale.json and annotate_scale.md into --out. No number in this
file is a target that anything asserts.
"""

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.report import git_commit, machine_info  # noqa: E402
from spacy_emotion.labels import LABELS  # noqa: E402


def build_input(data: Path, n: int, path: Path) -> None:
    """N texts from the validation and test splits, repeated in order, as .jsonl."""
    texts: List[str] = []
    for split in ("validation", "test"):
        with (data / f"{split}.jsonl").open(encoding="utf8") as fh:
            texts.extend(json.loads(line)["text"] for line in fh if line.strip())
    with path.open("w", encoding="utf8") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": i, "text": texts[i % len(texts)]}) + "\n")


def run_local(model: str, source: Path, out: Path, batch_size: int) -> Dict[str, Any]:
    from spacy_emotion.serving.annotate_files import Job, annotate
    from spacy_emotion.serving.classify import build_pipeline, set_cpu_threads

    set_cpu_threads(1)
    started = time.perf_counter()
    nlp = build_pipeline(model)
    loaded = time.perf_counter()
    summary = annotate(Job(source, out, model=model, batch_size=batch_size), nlp, progress_bar=False)
    done = time.perf_counter()
    return {
        "rows": summary.rows,
        "load_s": loaded - started,
        "annotate_s": done - loaded,
        "job_s": done - started,
        "docs_per_s": summary.rows / (done - started),
    }


def run_model(model: str, source: Path, batch_size: int) -> Dict[str, Any]:
    from spacy_emotion.serving.classify import build_pipeline, classify, set_cpu_threads

    set_cpu_threads(1)
    with source.open(encoding="utf8") as fh:
        texts = [json.loads(line)["text"] for line in fh]
    nlp = build_pipeline(model)
    started = time.perf_counter()
    n = sum(1 for _ in classify(nlp, texts, batch_size=batch_size))
    done = time.perf_counter()
    return {"rows": n, "job_s": done - started, "docs_per_s": n / (done - started)}


def run_ray(model: str, source: Path, out: Path, workers: int, batch_size: int, shard_rows: int) -> Dict[str, Any]:
    from spacy_emotion.serving.annotate_ray import RayJob, run_job

    job = RayJob(
        str(source),
        out,
        model=model,
        batch_size=batch_size,
        shard_rows=shard_rows,
        rows_per_task=min(shard_rows, 1024),
        workers=workers,
    )
    started = time.perf_counter()
    summary = run_job(job, progress_bar=False)
    done = time.perf_counter()
    return {"rows": summary.rows, "job_s": done - started, "docs_per_s": summary.rows / (done - started)}


def label_mismatches(local_out: Path, ray_out: Path) -> Dict[str, Any]:
    """Rows whose emotion differs from the local run, and the largest probability difference."""
    import pyarrow.parquet as pq

    local = {}
    with local_out.open(encoding="utf8") as fh:
        for line in fh:
            record = json.loads(line)
            local[record["line"]] = record
    differ, worst, seen = 0, 0.0, 0
    for path in sorted(ray_out.glob("part-*.parquet")):
        for row in pq.read_table(path).to_pylist():
            ref = local[row["line"]]
            seen += 1
            differ += row["emotion"] != ref["emotion"]
            worst = max(worst, max(abs(row[label] - ref["cats"][label]) for label in LABELS))
    return {"rows_compared": seen, "emotion_differs": differ, "max_probability_difference": worst}


def model_label(model: str) -> str:
    """The model as the report names it: a path inside the repository relative
    to it, another directory by its last two parts (no machine's paths)."""
    path = Path(model)
    if not path.exists():
        return model
    path = path.resolve()
    if path.is_relative_to(ROOT):
        return path.relative_to(ROOT).as_posix()
    return "/".join(path.parts[-2:])


def markdown(results: Dict[str, Any]) -> str:
    lines = [
        f"# annotate: single process against Ray ({results['date']})",
        "",
        f"Model `{results['model']}`, {results['n']:,} texts, commit `{results['commit']}`, "
        f"{results['machine'].get('cpu', '?')} ({results['machine'].get('cpu_count')} CPUs, "
        f"load average at start {results['machine'].get('load_average_at_start')}).",
        "",
        "| engine | job seconds | docs/s | emotion differs from local | max prob. difference |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, run in results["runs"].items():
        check = run.get("check", {})
        differs = check.get("emotion_differs", "")
        worst = f"{check['max_probability_difference']:.1e}" if check else ""
        lines.append(f"| {name} | {run['job_s']:.1f} | {run['docs_per_s']:,.0f} | {differs} | {worst} |")
    lines += [
        "",
        f"Ray start (`ray.init`, local, {results['ray_cpus']} CPUs): {results['ray_init_s']:.1f} s, "
        "not in the job times.",
        f"Local: model load {results['runs']['local']['load_s']:.1f} s, annotating "
        f"{results['runs']['local']['annotate_s']:.1f} s.",
        f"Ray's cost per row at 1 worker: {results['ray_overhead_ms_per_row']:.3f} ms "
        "((ray-1 job seconds - local job seconds) / texts).",
    ]
    if "ray_marginal_ms_per_row" in results:
        lines += [
            f"Split with a run on {results['runs']['ray-1-small']['rows']:,} texts: Ray annotates a row in "
            f"{results['ray_marginal_ms_per_row']:.3f} ms once started (local: {results['local_ms_per_row']:.3f} ms, "
            f"so {results['ray_marginal_ms_per_row'] - results['local_ms_per_row']:.3f} ms more), and starting "
            f"the job (worker, model load, first batches) takes {results['ray_start_s']:.1f} s. "
            f"The model alone takes {results['model_ms_per_row']:.3f} ms a row.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Trained pipeline directory")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "emotion")
    parser.add_argument("--texts", type=int, default=100_000, help="Number of texts")
    parser.add_argument("--workers", default="1,2", help="Ray worker counts, comma-separated")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shard-rows", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "runs" / "annotate-scale")
    args = parser.parse_args()

    import os

    import ray

    model = str(Path(args.model).resolve())
    results: Dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "machine": machine_info("cpu"),
        "model": model_label(args.model),
        "n": args.texts,
        "settings": {"batch_size": args.batch_size, "shard_rows": args.shard_rows},
        "runs": {},
    }
    with tempfile.TemporaryDirectory(prefix="annotate-scale-") as tmp:
        work = Path(tmp)
        source = work / "texts.jsonl"
        build_input(args.data, args.texts, source)
        print(f"model: {args.texts:,} texts", flush=True)
        results["runs"]["model"] = run_model(model, source, args.batch_size)
        print(json.dumps(results["runs"]["model"]), flush=True)
        print(f"local: {args.texts:,} texts", flush=True)
        results["runs"]["local"] = run_local(model, source, work / "local.jsonl", args.batch_size)
        print(json.dumps(results["runs"]["local"]), flush=True)
        results["ray_cpus"] = os.cpu_count()
        started = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
        results["ray_init_s"] = time.perf_counter() - started
        try:
            small = work / "small.jsonl"
            build_input(args.data, args.texts // 10, small)
            print(f"ray-1-small: {args.texts // 10:,} texts", flush=True)
            results["runs"]["ray-1-small"] = run_ray(
                model, small, work / "ray-small", 1, args.batch_size, max(1, args.shard_rows // 10)
            )
            for workers in [int(w) for w in args.workers.split(",")]:
                print(f"ray-{workers}: {args.texts:,} texts", flush=True)
                out = work / f"ray-{workers}"
                run = run_ray(model, source, out, workers, args.batch_size, args.shard_rows)
                run["check"] = label_mismatches(work / "local.jsonl", out)
                results["runs"][f"ray-{workers}"] = run
                print(json.dumps(run), flush=True)
        finally:
            ray.shutdown()
    if "ray-1" in results["runs"]:
        extra = results["runs"]["ray-1"]["job_s"] - results["runs"]["local"]["job_s"]
        results["ray_overhead_ms_per_row"] = 1000 * extra / args.texts
        big, small = results["runs"]["ray-1"], results["runs"]["ray-1-small"]
        slope = (big["job_s"] - small["job_s"]) / (big["rows"] - small["rows"])
        results["ray_marginal_ms_per_row"] = 1000 * slope
        results["ray_start_s"] = big["job_s"] - slope * big["rows"]
        results["local_ms_per_row"] = 1000 * results["runs"]["local"]["annotate_s"] / args.texts
        results["model_ms_per_row"] = 1000 * results["runs"]["model"]["job_s"] / args.texts
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "annotate_scale.json").write_text(json.dumps(results, indent=1), encoding="utf8")
    (args.out / "annotate_scale.md").write_text(markdown(results), encoding="utf8")
    print(markdown(results))


if __name__ == "__main__":
    main()
