"""The record of a run: what it was measured on (machine, versions, commit,
command), the headline ratios, and results.json / results.md.
"""

import json
import os
import platform
import shlex
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional

from benchmarks.systems import MAX_ACCURACY_LOSS, REFERENCE_VARIANT

ROOT = Path(__file__).resolve().parent.parent


def machine_info(device: str) -> Dict[str, Any]:
    """What the numbers were measured on.

    device (str): "cpu" or "cuda" (then the GPU's name is recorded too).
    RETURNS (Dict[str, Any]): platform, CPU model and flags, memory, versions, load average.
    """
    from importlib.metadata import PackageNotFoundError, version

    info: Dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next((l.split(":", 1)[1].strip() for l in cpuinfo.splitlines() if l.startswith("model name")), "")
        flags = next((l.split(":", 1)[1].split() for l in cpuinfo.splitlines() if l.startswith("flags")), [])
        info["cpu_flags"] = sorted(
            f for f in flags if f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
        )
        mem = next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal"))
        info["memory_gb"] = round(int(mem.split()[1]) / 2**20, 1)
    except (OSError, StopIteration):
        pass
    for package in ("torch", "transformers", "spacy", "spacy-transformers", "thinc"):
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            info[package] = None
    if device == "cuda":
        import torch

        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        load = os.getloadavg()
        info["load_average_at_start"] = [round(x, 2) for x in load]
    except OSError:
        pass
    return info


def git_commit() -> str:
    """HEAD's hash, with '+dirty' when tracked files differ from it.

    Where the source tree has no .git (an exported copy), set
    $SPACY_EMOTION_COMMIT to the commit it was made from.
    RETURNS (str): the hash, or "unknown".
    """
    if os.environ.get("SPACY_EMOTION_COMMIT"):
        return os.environ["SPACY_EMOTION_COMMIT"]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_meta(device: str, script: str, argv: List[str]) -> Dict[str, Any]:
    """Date, machine, commit and command of a run: read before anything is
    loaded, so that the load average is the machine's at the start.

    device (str): "cpu" or "cuda".
    script (str): the command's script, e.g. "benchmarks/bench.py".
    argv (List[str]): its arguments.
    RETURNS (Dict[str, Any]): "date" (UTC), "machine", "commit", "command".
    """
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(device),
        "commit": git_commit(),
        "command": " ".join(shlex.quote(a) for a in ["python", script, *argv]),
    }


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    """a / b, or None when either is missing (or zero)."""
    return a / b if a and b else None


def docs_per_s(systems: Dict[str, Any], name: str, where: str = "test") -> Optional[float]:
    """Docs/s of a system on the test texts ("test") or the stream ("stream"); None if not measured."""
    return (systems.get(name) or {}).get(where, {}).get("docs_per_s")


def headline(results: Dict[str, Any]) -> Dict[str, Any]:
    """The headline ratios (A against B and C, A's memory growth, training),
    the fastest setting within MAX_ACCURACY_LOSS, and whether each target is met.

    results (Dict[str, Any]): "systems", "variants" and "training" of a run.
    RETURNS (Dict[str, Any]): the ratios, and "targets": {target: True, False or None (not measured)}.
    """
    systems, variants, training = results["systems"], results["variants"], results["training"]
    head: Dict[str, Any] = {
        "A_over_B": ratio(docs_per_s(systems, "A-component"), docs_per_s(systems, "B")),
        "A_over_B_stream": ratio(docs_per_s(systems, "A-component", "stream"), docs_per_s(systems, "B", "stream")),
        "A_pipeline_over_B": ratio(docs_per_s(systems, "A-pipeline"), docs_per_s(systems, "B")),
        "A_over_C_default": ratio(docs_per_s(systems, "A-component"), docs_per_s(systems, "C-default")),
        "A_rss_growth_pct": (systems.get("A-component") or {}).get("stream", {}).get("rss_growth_pct"),
    }
    ok = {k: v for k, v in variants.items() if v.get("accuracy_ok")}
    if ok:
        best = max(ok, key=lambda k: ok[k]["test"]["docs_per_s"])
        head["best_variant"] = best
        head["best_variant_options"] = ok[best]["options"]
        head["best_variant_over_B"] = ratio(ok[best]["test"]["docs_per_s"], docs_per_s(systems, "B"))
    cpu = training.get("fp32") or {}
    head["train_spacy_over_torch"] = cpu.get("ratio")
    targets = {
        "A >= 1.0 x B docs/s": (head["A_over_B"], 1.0),
        "A >= 3 x C-default docs/s": (head["A_over_C_default"], 3.0),
        "RSS growth <= 5 %": (None if head["A_rss_growth_pct"] is None else -head["A_rss_growth_pct"], -5.0),
        "training >= 0.8 x plain loop": (head["train_spacy_over_torch"], 0.8),
        "stretch: best A setting >= 1.5 x B": (head.get("best_variant_over_B"), 1.5),
    }
    head["targets"] = {k: (None if v is None else v >= t) for k, (v, t) in targets.items()}
    return head


def fmt(value: Optional[float], digits: int = 1) -> str:
    """A number with thousands separators and `digits` decimals; "–" for None."""
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def markdown(results: Dict[str, Any]) -> str:
    """results.md: the tables of one run.

    results (Dict[str, Any]): the run, as results.json holds it.
    RETURNS (str): Markdown.
    """
    meta, head = results["meta"], results["headline"]
    m = meta["machine"]
    lines = [
        "# spacy-emotion vs plain Transformers",
        "",
        f"- date: {meta['date']}",
        f"- machine: {m.get('cpu', '')} ({m.get('cpu_count')} CPUs, {', '.join(m.get('cpu_flags', []))}), "
        f"{m.get('memory_gb', '?')} GB, {m.get('platform')}"
        + (f", GPU {m['gpu']}" if m.get("gpu") else "")
        + f"; load average at start {m.get('load_average_at_start')}",
        f"- versions: torch {m.get('torch')}, transformers {m.get('transformers')}, spacy {m.get('spacy')}, "
        f"spacy-transformers {m.get('spacy-transformers')}",
        f"- commit: {meta['commit']}",
        f"- command: `{meta['command']}`",
        f"- model: {meta['model']}; device {meta['device']}; {meta['test_texts']} test texts; batch size "
        f"{meta['batch_size']}; "
        f"{meta['repeats']} timed runs (median) after a warm-up run; latency over {meta['latency']} single texts",
        f"- stream: {meta['stream']} docs (test texts repeated, shuffled); C-default: {meta['stream_c']} docs",
        f"- B: {meta['B']['head']}",
        "",
        "## Headline",
        "",
        f"**A/B = {fmt(head.get('A_over_B'), 2)}x** docs/s on the test texts "
        f"(stream: {fmt(head.get('A_over_B_stream'), 2)}x); A/C-default = {fmt(head.get('A_over_C_default'), 2)}x; "
        f"A's RSS growth over the stream {fmt(head.get('A_rss_growth_pct'), 2)} %; "
        f"training spacy/plain loop = {fmt(head.get('train_spacy_over_torch'), 2)}x.",
    ]
    if meta.get("partial"):
        lines[2:2] = ["**Partial: written while the run was going on; the rows below are those finished.**", ""]
    if head.get("best_variant"):
        lines.append(
            f"Fastest setting within {MAX_ACCURACY_LOSS} accuracy points: **{head['best_variant']}** "
            f"`{json.dumps(head['best_variant_options'])}` = {fmt(head.get('best_variant_over_B'), 2)}x B."
        )
    lines += ["", "| target | met |", "|---|---|"]
    lines += [f"| {k} | {'–' if v is None else ('yes' if v else 'no')} |" for k, v in head["targets"].items()]
    lines += [
        "",
        "## Inference",
        "",
        "| system | docs/s | words/s | stream docs/s | latency p50 ms | p95 ms | load s | peak RSS MB | RSS "
        "growth % (docs) | accuracy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results["systems"].items():
        stream = r.get("stream") or {}
        lat = r.get("latency_ms") or {}
        growth = (
            f"{fmt(stream.get('rss_growth_pct'), 2)} ({stream.get('rss_from_docs')}→{stream.get('rss_to_docs')})"
            if stream
            else "–"
        )
        lines.append(
            f"| {name} | {fmt(r['test']['docs_per_s'])} | {fmt(r['test']['words_per_s'], 0)} | "
            f"{fmt(stream.get('docs_per_s'))} | "
            f"{fmt(lat.get('p50'), 2)} | {fmt(lat.get('p95'), 2)} | {fmt(r['load_s'], 2)} | "
            f"{fmt(r['peak_rss_mb'], 0)} | {growth} | "
            f"{fmt(100 * r['accuracy'], 2)}{'' if name.startswith('A') else '*'} |"
        )
    lines.append("")
    lines.append("\\* B and C: not a trained head (see B above); accuracy only shows they ran.")
    splits = {n: r["time_split_ms_per_doc"] for n, r in results["systems"].items() if r.get("time_split_ms_per_doc")}
    if splits:
        lines += [
            "",
            "Where A's time goes (one more run over the test texts, the transformer's forward calls timed by "
            "torch hooks):",
            "",
            "| system | ms per doc | forward pass ms | rest ms | forward share | forward calls |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {n} | {fmt(t['total'], 3)} | {fmt(t['forward'], 3)} | {fmt(t['other'], 3)} | "
            f"{fmt(100 * t['forward'] / t['total'], 0)} % | {t['forward_calls']} |"
            for n, t in splits.items()
        ]
    if any("gpu_peak_mb" in r for r in results["systems"].values()):
        lines += ["", "| system | GPU peak MB |", "|---|---:|"]
        lines += [f"| {n} | {fmt(r.get('gpu_peak_mb'), 0)} |" for n, r in results["systems"].items()]
    if results["variants"]:
        ref = meta.get("reference_variant")
        lines += [
            "",
            "## Speed settings of emotion_classifier (A-component)",
            "",
            f"Accuracy change and label agreement against **{ref}**"
            + (" (the model as trained: float32, the pipeline's own batches)." if ref == REFERENCE_VARIANT else "."),
            "",
            f"| setting | options | Linear layers | docs/s | x {ref} | x B | latency p50 ms | load s | peak "
            f"RSS MB | accuracy | Δ accuracy (points) | agreement with {ref} | ≤ {MAX_ACCURACY_LOSS} pt |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        base = results["variants"].get(ref, {}).get("test", {}).get("docs_per_s")
        for name, r in results["variants"].items():
            lines.append(
                f"| {name} | `{json.dumps(r['options'])}` | {r.get('linear_format', '–')} | "
                f"{fmt(r['test']['docs_per_s'])} | {fmt(ratio(r['test']['docs_per_s'], base), 2)} | "
                f"{fmt(ratio(r['test']['docs_per_s'], docs_per_s(results['systems'], 'B')), 2)} | "
                f"{fmt((r.get('latency_ms') or {}).get('p50'), 2)} | "
                f"{fmt(r.get('load_s'), 2)} | {fmt(r['peak_rss_mb'], 0)} | {fmt(100 * r['accuracy'], 2)} | "
                f"{fmt(r.get('accuracy_delta_points'), 2)} | "
                f"{fmt(100 * r['agreement'], 2) if r.get('agreement') is not None else '–'} % | "
                f"{'yes' if r.get('accuracy_ok') else 'no'} |"
            )
    if results["training"]:
        lines += [
            "",
            "## Training throughput",
            "",
            "| precision | spacy train ex/s | plain loop ex/s | spacy/plain | epoch s (spacy) | epoch s (plain) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for precision, t in results["training"].items():
            lines.append(
                f"| {precision} | {fmt(t['spacy']['examples_per_s'])} | {fmt(t['torch']['examples_per_s'])} | "
                f"{fmt(t.get('ratio'), 2)} | "
                f"{fmt(t.get('epoch_s_spacy'), 0)} | {fmt(t.get('epoch_s_torch'), 0)} |"
            )
        lines.append("")
        lines.append(
            f"{meta['train_steps']} steps of batch {meta['train_batch_size']}, the first "
            f"{meta['train_warmup']} not timed; "
            f"epoch = {meta['train_examples']} training examples at that rate."
        )
    return "\n".join(lines) + "\n"


def write_results(results: Dict[str, Any], out: Path, partial: bool = False) -> None:
    """Write results.json and results.md, the headline computed anew.

    results (Dict[str, Any]): the run so far; its "headline" is set here.
    out (Path): the folder.
    partial (bool): the run is not over yet (the files say so), so that a run
        stopped early keeps the rows it measured.
    """
    if partial:
        results["meta"]["partial"] = True
    else:
        results["meta"].pop("partial", None)
    results["headline"] = headline(results)
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf8")
    text = markdown(results)
    if results.get("host_bound"):  # its own tables, written by host_bound.py next to these
        text += "\n" + (out / "host-bound" / "host_bound.md").read_text(encoding="utf8").replace("# ", "## ", 1)
    (out / "results.md").write_text(text, encoding="utf8")
