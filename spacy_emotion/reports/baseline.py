"""Feature-extraction baselines and the comparison table of all models.

The baselines are the seeds' feature-extraction approach: scikit-learn's
LogisticRegression on frozen backbone embeddings (mean-pooled and [CLS]),
and DummyClassifier(strategy="most_frequent"), which predicts the
majority class. Their accuracy and macro-F1 on validation and test sit in
one table beside the fine-tuned pipelines' test metrics
(`metrics/trf.json`, `metrics/bow.json`, written by `evaluate`), in
`reports/comparison.md` and `reports/comparison.json`.
"""

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import srsly

from ..training.metrics import compute_metrics

BASELINE_FILE = "baseline.json"
"""The baselines' scores in the reports folder; `write_comparison` reads it."""

PIPELINES = {
    "trf": "fine-tuned transformer pipeline (trf)",
    "bow": "bag-of-words pipeline (bow)",
}
"""Metrics files of the trained pipelines (metrics/{key}.json) and their names in the table."""

EVAL_SPLITS = ("validation", "test")


def _scores(y_true: Sequence[str], y_pred: Sequence[str]) -> Dict[str, Any]:
    metrics = compute_metrics(list(y_true), list(y_pred))
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "n": metrics["n"]}


def train_baselines(
    features: Dict[str, Dict[str, np.ndarray]],
    labels: Dict[str, Sequence[str]],
    max_iter: int = 1000,
    seed: int = 0,
) -> List[Dict[str, Any]]:
    """Fit the dummy and logistic-regression baselines on train, score them on validation and test.

    features (Dict[str, Dict[str, np.ndarray]]): split -> pooling -> (n, dim)
        embeddings (see `features.embed_splits`); needs "train".
    labels (Dict[str, Sequence[str]]): split -> gold label names.
    max_iter (int): LogisticRegression's iteration limit.
    seed (int): random state of the classifiers.
    RETURNS (List[Dict[str, Any]]): one row per baseline: model, features,
        and for each evaluated split {accuracy, macro_f1, n}. [CLS] features
        are skipped when they equal the mean-pooled ones.
    """
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    splits = [s for s in EVAL_SPLITS if s in features]
    y_train = list(labels["train"])
    rows = []
    dummy = DummyClassifier(strategy="most_frequent").fit(np.zeros((len(y_train), 1)), y_train)
    row: Dict[str, Any] = {"model": "most frequent class (DummyClassifier)", "kind": "baseline", "features": "none"}
    for split in splits:
        row[split] = _scores(labels[split], dummy.predict(np.zeros((len(labels[split]), 1))))
    rows.append(row)
    train = features["train"]
    poolings = ["mean"] + (["cls"] if "cls" in train and not np.allclose(train["cls"], train["mean"]) else [])
    for pooling in poolings:
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed))
        clf.fit(train[pooling], y_train)
        name = "mean-pooled" if pooling == "mean" else "[CLS]"
        row = {"model": f"logistic regression on frozen {name} embeddings", "kind": "baseline", "features": pooling}
        for split in splits:
            row[split] = _scores(labels[split], clf.predict(features[split][pooling]))
        rows.append(row)
    return rows


def pipeline_rows(metrics_dir: Optional[Path]) -> List[Dict[str, Any]]:
    """Test scores of the trained pipelines whose metrics file exists.

    metrics_dir (Optional[Path]): folder with trf.json / bow.json from `evaluate`.
    RETURNS (List[Dict[str, Any]]): one row per pipeline found (no validation scores).
    """
    rows = []
    for key, name in PIPELINES.items():
        path = Path(metrics_dir) / f"{key}.json" if metrics_dir is not None else None
        if path is None or not path.is_file():
            continue
        metrics = srsly.read_json(path)
        rows.append(
            {
                "model": name,
                "kind": "pipeline",
                "features": key,
                "source": str(path),
                "test": {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "n": metrics.get("n")},
            }
        )
    return rows


def _cell(row: Dict[str, Any], split: str, key: str) -> str:
    value = (row.get(split) or {}).get(key)
    if value is None:
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else f"{value:,}"


def comparison_markdown(rows: List[Dict[str, Any]], backbone: str = "") -> str:
    """The comparison table as markdown.

    rows (List[Dict[str, Any]]): baseline and pipeline rows.
    backbone (str): the frozen backbone's name, for the note under the table.
    RETURNS (str): the markdown.
    """
    header = "| model | validation accuracy | validation macro-F1 | test accuracy | test macro-F1 | test texts |"
    lines = ["# Model comparison", "", header, "|" + "---|" * 1 + "---:|" * 5]
    for row in rows:
        cells = [
            _cell(row, s, k)
            for s, k in (
                ("validation", "accuracy"),
                ("validation", "macro_f1"),
                ("test", "accuracy"),
                ("test", "macro_f1"),
                ("test", "n"),
            )
        ]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    lines.append("")
    if backbone:
        lines.append(f"Frozen features from `{backbone}`; the baselines are trained on the train split.")
    lines.append("Pipelines: test metrics from `metrics/*.json`; – = not measured.")
    return "\n".join(lines) + "\n"


def write_comparison(output_dir: Path, metrics_dir: Optional[Path] = None) -> Dict[str, Any]:
    """Combine the saved baselines with the pipelines' metrics into comparison.md and .json.

    output_dir (Path): the reports folder holding baseline.json.
    metrics_dir (Optional[Path]): folder of trf.json / bow.json, if any.
    RETURNS (Dict[str, Any]): {"backbone", "limit", "rows"} as written to comparison.json.
    """
    output_dir = Path(output_dir)
    path = output_dir / BASELINE_FILE
    saved = srsly.read_json(path) if path.is_file() else {"rows": []}
    rows = list(saved["rows"]) + pipeline_rows(metrics_dir)
    if not rows:
        raise ValueError(f"Nothing to compare: no {path} and no pipeline metrics in {metrics_dir}")
    result = {"backbone": saved.get("backbone", ""), "limit": saved.get("limit", 0), "rows": rows}
    srsly.write_json(output_dir / "comparison.json", result)
    (output_dir / "comparison.md").write_text(comparison_markdown(rows, result["backbone"]), encoding="utf8")
    return result


def run_baselines(
    texts: Dict[str, Sequence[str]],
    labels: Dict[str, Sequence[str]],
    output_dir: Path,
    backbone: str,
    metrics_dir: Optional[Path] = None,
    cache_dir: Optional[Path] = None,
    batch_size: int = 32,
    device: str = "cpu",
    limit: int = 0,
    progress: bool = True,
) -> Dict[str, Any]:
    """Embed the splits, fit and score the baselines, write baseline.json and the comparison.

    texts (Dict[str, Sequence[str]]): train, validation and test texts.
    labels (Dict[str, Sequence[str]]): their gold labels.
    output_dir (Path): the reports folder.
    backbone (str): the frozen backbone (see `features.load_backbone`).
    metrics_dir (Optional[Path]): folder of the pipelines' metrics files.
    cache_dir (Optional[Path]): embeddings cache (None = no cache).
    batch_size (int): texts per forward pass.
    device (str): torch device.
    limit (int): the per-split sample size used, recorded in the output.
    progress (bool): show progress bars.
    RETURNS (Dict[str, Any]): the comparison (see `write_comparison`).
    """
    from .features import embed_splits

    features = embed_splits(texts, backbone, cache_dir, batch_size, device, progress)
    rows = train_baselines(features, labels)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output_dir / BASELINE_FILE, {"backbone": backbone, "limit": limit, "rows": rows})
    return write_comparison(output_dir, metrics_dir)
