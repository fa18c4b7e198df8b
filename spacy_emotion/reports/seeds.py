"""Scores over seeds: mean ± sd of several runs of each model, and their
per-class F1 side by side.

Every run is a metrics JSON with the keys of `spacy-emotion evaluate` (and
of `spacy-emotion hf-baseline`'s metrics-dev.json / metrics-test.json):
accuracy, macro_f1, weighted_f1 and per_class. A group is one model (a
config, the plain fine-tune), its runs the seeds.
"""

import json
import statistics
from pathlib import Path
from typing import Any, Dict, List, Sequence

from ..labels import LABELS

SCORES = ("accuracy", "macro_f1", "weighted_f1")
"""The overall scores summarised per group."""


def _mean_sd(values: Sequence[float]) -> Dict[str, float]:
    """Mean and sample standard deviation (0 for one run)."""
    values = [float(v) for v in values]
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0}


def read_run(path: Path) -> Dict[str, Any]:
    """RETURNS (Dict[str, Any]): a metrics JSON; ValueError if it lacks the keys."""
    data = json.loads(Path(path).read_text(encoding="utf8"))
    missing = [key for key in (*SCORES, "per_class") if key not in data]
    if missing:
        raise ValueError(f"{path} is not a metrics file of `spacy-emotion evaluate`: no {', '.join(missing)}")
    return data


def summarize(groups: Dict[str, Sequence[Path]]) -> Dict[str, Any]:
    """Mean ± sd of every group's runs.

    groups (Dict[str, Sequence[Path]]): group name -> its runs' metrics files.
    RETURNS (Dict[str, Any]): per group "runs" (the files), "n", one
        {"mean", "sd"} per score of SCORES and "per_class_f1": {label: {"mean", "sd"}}.
    """
    summary: Dict[str, Any] = {}
    for name, paths in groups.items():
        if not paths:
            raise ValueError(f"The group {name!r} has no metrics files")
        runs = [read_run(path) for path in paths]
        row: Dict[str, Any] = {"runs": [str(path) for path in paths], "n": len(runs)}
        for score in SCORES:
            row[score] = _mean_sd([run[score] for run in runs])
        row["per_class_f1"] = {
            label: _mean_sd([run["per_class"][label]["f1"] for run in runs])
            for label in LABELS
            if all(label in run["per_class"] for run in runs)
        }
        summary[name] = row
    return summary


def _pm(value: Dict[str, float]) -> str:
    return f"{value['mean']:.4f} ± {value['sd']:.4f}"


def seeds_markdown(summary: Dict[str, Any], title: str = "Scores over seeds") -> str:
    """RETURNS (str): the overall table (mean ± sd per group) and the per-class
    F1 table (a column per group)."""
    names: List[str] = list(summary)
    lines = [f"# {title}", "", "| model | runs | accuracy | macro-F1 | weighted-F1 |", "|---|---:|---:|---:|---:|"]
    for name in names:
        row = summary[name]
        lines.append(f"| {name} | {row['n']} | " + " | ".join(_pm(row[score]) for score in SCORES) + " |")
    lines += ["", "Per-class F1 (mean ± sd over the runs):", ""]
    lines.append("| emotion | " + " | ".join(names) + " |")
    lines.append("|---|" + "---:|" * len(names))
    for label in LABELS:
        cells = [summary[name]["per_class_f1"].get(label) for name in names]
        lines.append(f"| {label} | " + " | ".join(_pm(c) if c else "–" for c in cells) + " |")
    lines += ["", "sd: the sample standard deviation over the runs (0 for a single run)."]
    return "\n".join(lines) + "\n"


TITLE = "Scores over seeds"


def write_seeds(output_dir: Path, groups: Dict[str, Sequence[Path]], title: str = TITLE) -> Dict[str, Any]:
    """Write seeds.json and seeds.md to `output_dir`. RETURNS: the summary."""
    summary = summarize(groups)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "seeds.json").write_text(json.dumps(summary, indent=2), encoding="utf8")
    (output_dir / "seeds.md").write_text(seeds_markdown(summary, title), encoding="utf8")
    return summary
