"""Evaluation analyses of a model's test predictions.

From the texts, gold labels and (n, 6) probabilities that `evaluate
--predictions` writes (read with `metrics.read_predictions`), `analyze`
writes to one folder:

* confusion_matrix.png: the confusion matrix normalised over each true label;
* per_class.png: precision, recall and F1 of each emotion;
* errors.jsonl and errors.md: the N test examples with the highest loss
  (cross-entropy of the gold label), highest first;
* calibration.png and the ECE: a reliability diagram of the top-label
  confidence, which `threshold` in the emotion_classifier compares against;
* analysis.json: the metrics, the calibration bins and the ECE.

Every metric scikit-learn has comes from scikit-learn (`compute_metrics`,
`confusion_matrix`, `calibration_curve`); only the ECE, which it lacks, is
computed here from calibration_curve's bins.
"""

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import srsly

from ..labels import LABEL_TO_ID, LABELS
from ..training.dataset import sample
from ..training.metrics import compute_metrics, predicted_labels, read_predictions
from . import plots
from .markdown import markdown_cell

EPS = float(np.finfo(np.float64).eps)
"""Probabilities are clipped to [EPS, 1] before taking logs: the float64
epsilon, as scikit-learn's `log_loss` clips float64 probabilities."""


def normalized_confusion(gold: Sequence[str], pred: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
    """The confusion matrix, raw and normalised over each true label (scikit-learn).

    gold (Sequence[str]): gold label names.
    pred (Sequence[str]): predicted label names.
    RETURNS (Tuple[np.ndarray, np.ndarray]): (shares, counts), both (6, 6)
        with rows = true label and columns = predicted label in LABELS
        order; a row of a label without examples is all zeros.
    """
    from sklearn.metrics import confusion_matrix

    counts = confusion_matrix(gold, pred, labels=list(LABELS))
    shares = confusion_matrix(gold, pred, labels=list(LABELS), normalize="true")
    return np.nan_to_num(shares), counts


def example_losses(gold: Sequence[str], probs: np.ndarray) -> np.ndarray:
    """The cross-entropy loss of each example: -log p(gold label).

    Its mean is scikit-learn's `log_loss` (which only gives the mean).

    gold (Sequence[str]): gold label names.
    probs (np.ndarray): (n, 6) probabilities in LABELS order.
    RETURNS (np.ndarray): (n,) losses.
    """
    probs = np.asarray(probs, dtype=float)
    idx = np.asarray([LABEL_TO_ID[g] for g in gold], dtype=int)
    return -np.log(np.clip(probs[np.arange(len(idx)), idx], EPS, 1.0))


def top_losses(texts: Sequence[str], gold: Sequence[str], probs: np.ndarray, n: int = 20) -> List[Dict[str, Any]]:
    """The `n` examples with the highest loss, highest first (ties keep input order).

    texts (Sequence[str]): the texts.
    gold (Sequence[str]): their gold labels.
    probs (np.ndarray): (n, 6) probabilities in LABELS order.
    n (int): how many to return.
    RETURNS (List[Dict[str, Any]]): rank, index (in the input), text, gold,
        pred, prob (of the predicted label), gold_prob, loss, correct.
    """
    probs = np.asarray(probs, dtype=float)
    losses = example_losses(gold, probs)
    pred = predicted_labels(probs) if len(probs) else []
    order = np.argsort(-losses, kind="stable")[:n]
    return [
        {
            "rank": rank,
            "index": int(i),
            "text": texts[i],
            "gold": gold[i],
            "pred": pred[i],
            "prob": float(probs[i].max()),
            "gold_prob": float(probs[i, LABEL_TO_ID[gold[i]]]),
            "loss": float(losses[i]),
            "correct": gold[i] == pred[i],
        }
        for rank, i in enumerate(order, start=1)
    ]


def errors_markdown(rows: List[Dict[str, Any]], title: str = "Highest-loss test examples") -> str:
    """The top-loss examples as a markdown table.

    rows (List[Dict[str, Any]]): the output of `top_losses`.
    title (str): the heading.
    RETURNS (str): the markdown.
    """
    lines = [
        f"# {title}",
        "",
        "| # | text | true | predicted | p(predicted) | p(true) | loss |",
        "|---:|---|---|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['rank']} | {markdown_cell(row['text'])} | {row['gold']} | {row['pred']} | "
            f"{row['prob']:.3f} | {row['gold_prob']:.3f} | {row['loss']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def calibration(gold: Sequence[str], probs: np.ndarray, n_bins: int = 10) -> Dict[str, Any]:
    """Top-label calibration: reliability bins and the expected calibration error.

    The confidence of an example is its highest probability; it is correct
    when that label is the gold one. Confidences fall into `n_bins` equal
    bins over [0, 1] (upper edge included, as in scikit-learn's
    `calibration_curve`, which gives each bin's accuracy and mean
    confidence). ECE = sum over bins of (bin size / n) * |accuracy - confidence|.

    gold (Sequence[str]): gold label names.
    probs (np.ndarray): (n, 6) probabilities in LABELS order.
    n_bins (int): number of bins.
    RETURNS (Dict[str, Any]): ece, n_bins, edges and bins (one dict per
        non-empty bin: lower, upper, count, accuracy, confidence).
    """
    from sklearn.calibration import calibration_curve

    probs = np.asarray(probs, dtype=float)
    if not len(probs):
        raise ValueError("No predictions to calibrate")
    confidence = probs.max(axis=1)
    correct = (np.asarray(predicted_labels(probs)) == np.asarray(gold)).astype(int)
    accuracy, mean_conf = calibration_curve(correct, confidence, n_bins=n_bins, strategy="uniform", pos_label=1)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bin_ids = np.searchsorted(edges[1:-1], confidence)  # the binning of calibration_curve
    counts = np.bincount(bin_ids, minlength=n_bins)
    filled = np.flatnonzero(counts)
    bins = [
        {
            "lower": float(edges[b]),
            "upper": float(edges[b + 1]),
            "count": int(counts[b]),
            "accuracy": float(acc),
            "confidence": float(conf),
        }
        for b, acc, conf in zip(filled, accuracy, mean_conf)
    ]
    ece = float(sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins) / len(probs))
    return {"ece": ece, "n_bins": n_bins, "edges": edges.tolist(), "bins": bins}


def analyze(
    texts: Sequence[str],
    gold: Sequence[str],
    probs: np.ndarray,
    output_dir: Path,
    name: str = "model",
    top_n: int = 20,
    n_bins: int = 10,
) -> Dict[str, Any]:
    """Write every evaluation analysis of one model's predictions.

    texts, gold, probs: the test texts, gold labels and (n, 6) probabilities
        (each row is rescaled to sum to exactly 1).
    output_dir (Path): the folder of this model's report (e.g. reports/trf).
    name (str): the model's name, used in titles.
    top_n (int): how many highest-loss examples to keep.
    n_bins (int): calibration bins.
    RETURNS (Dict[str, Any]): what analysis.json holds: name, n, metrics,
        log_loss, calibration, and the written files.
    """
    from sklearn.metrics import log_loss

    probs = np.asarray(probs, dtype=float)
    texts, gold = list(texts), list(gold)
    if len(texts) != len(gold) or len(gold) != len(probs):
        raise ValueError(f"{len(texts)} texts, {len(gold)} gold labels and {len(probs)} probability rows")
    if not len(probs):
        raise ValueError("No predictions to analyse")
    # float32 rows of a softmax sum to 1 only up to rounding, which log_loss rejects
    probs = probs / np.clip(probs.sum(axis=1, keepdims=True), EPS, None)
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    pred = predicted_labels(probs)
    metrics = compute_metrics(gold, pred)
    shares, counts = normalized_confusion(gold, pred)
    n = len(gold)
    files = {
        "confusion_matrix": plots.confusion_heatmap(
            shares,
            counts,
            folder / "confusion_matrix.png",
            f"{name}: confusion matrix, normalised by true label ({n:,} texts)",
        ),
        "per_class": plots.per_class_bars(
            metrics["per_class"],
            folder / "per_class.png",
            f"{name}: per-class scores (accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f})",
        ),
    }
    errors = top_losses(texts, gold, probs, top_n)
    files["errors_jsonl"] = folder / "errors.jsonl"
    srsly.write_jsonl(files["errors_jsonl"], errors)
    files["errors_md"] = folder / "errors.md"
    files["errors_md"].write_text(
        errors_markdown(errors, f"{name}: the {len(errors)} highest-loss test examples"), encoding="utf8"
    )
    calib = calibration(gold, probs, n_bins)
    files["calibration"] = plots.reliability_diagram(
        calib["bins"],
        calib["edges"],
        calib["ece"],
        folder / "calibration.png",
        f"{name}: reliability diagram ({n:,} texts)",
    )
    result = {
        "name": name,
        "n": n,
        "metrics": metrics,
        # integer ids: with label names, log_loss would order the columns alphabetically
        "log_loss": float(log_loss([LABEL_TO_ID[g] for g in gold], probs, labels=list(range(len(LABELS))))),
        "calibration": calib,
        "files": {key: str(path) for key, path in files.items()},
    }
    srsly.write_json(folder / "analysis.json", result)
    return result


def analyze_predictions(
    predictions: Path,
    output_dir: Path,
    name: Optional[str] = None,
    top_n: int = 20,
    n_bins: int = 10,
    limit: int = 0,
    seed: int = 0,
) -> Dict[str, Any]:
    """`analyze` on a predictions file written by `evaluate --predictions`.

    predictions (Path): the jsonl file (text, gold, probs per line).
    output_dir (Path): where the analyses go.
    name (Optional[str]): the model's name; defaults to output_dir's name.
    top_n, n_bins: see `analyze`.
    limit (int): analyse a reproducible sample of this many rows (0 = all).
    seed (int): seed of the sample.
    RETURNS (Dict[str, Any]): see `analyze`.
    """
    texts, gold, probs = read_predictions(predictions)
    if not texts:
        raise ValueError(f"No predictions in {predictions}")
    if 0 < limit < len(texts):
        keep = sample(list(range(len(texts))), limit, seed)  # the same sample rule as every --limit
        texts, gold, probs = [texts[i] for i in keep], [gold[i] for i in keep], probs[keep]
    return analyze(texts, gold, probs, output_dir, name or Path(output_dir).name, top_n, n_bins)
