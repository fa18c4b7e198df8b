"""Test-split metrics of an emotion model, computed with scikit-learn."""

from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from ..labels import LABELS, normalize


def compute_metrics(y_true: Sequence[str], y_pred: Sequence[str]) -> Dict[str, Any]:
    """Accuracy, macro/weighted F1, per-class scores and the confusion matrix.

    y_true (Sequence[str]): gold label names.
    y_pred (Sequence[str]): predicted label names.
    RETURNS (Dict[str, Any]): keys accuracy, macro_f1, weighted_f1, labels,
        per_class ({label: {precision, recall, f1, support}}) and
        confusion_matrix (rows = true label, columns = predicted, in
        `labels` order). Labels absent from both count 0, not NaN.
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} gold labels but {len(y_pred)} predictions")
    if not len(y_true):
        raise ValueError("No examples to evaluate")
    labels = list(LABELS)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "labels": labels,
        "per_class": {
            label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, label in enumerate(labels)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def gold_labels(docs) -> List[str]:
    """The gold label of each doc: the emotion with the highest value in
    doc.cats, whose keys are the six labels in any case ("joy" or "Joy")."""
    out = []
    for i, doc in enumerate(docs):
        cats = {normalize(key): value for key, value in doc.cats.items()}
        scores = {label: cats[label] for label in LABELS if label in cats}
        if not scores or max(scores.values()) <= 0:
            raise ValueError(
                f"Gold doc {i} has no emotion label: its cats are {dict(doc.cats) or 'empty'}, "
                f"expected the keys {', '.join(LABELS)} with the gold one at 1.0"
            )
        out.append(max(scores, key=scores.get))
    return out


def predict_corpus(model: str, corpus: Path, batch_size: int = 64):
    """Predict every doc of a DocBin corpus with a trained pipeline.

    RETURNS (Tuple[List[str], List[str], np.ndarray]): texts, gold labels and
        the (n, 6) probabilities in LABELS order.
    """
    import spacy
    from spacy.tokens import DocBin
    from tqdm import tqdm

    from ..component.predictors import load_predictor

    predictor = load_predictor(str(model))
    nlp = spacy.blank("en")
    docs = list(DocBin().from_disk(corpus).get_docs(nlp.vocab))
    texts = [doc.text for doc in docs]
    gold = gold_labels(docs)
    chunks = []
    for start in tqdm(range(0, len(texts), batch_size), desc="Predicting", unit="batch", disable=None):
        chunks.append(predictor.predict(texts[start : start + batch_size]))
    probs = np.concatenate(chunks) if chunks else np.zeros((0, len(LABELS)))
    return texts, gold, probs


def predicted_labels(probs: np.ndarray) -> List[str]:
    """RETURNS (List[str]): the argmax label of each row."""
    return [LABELS[i] for i in np.asarray(probs).argmax(axis=1)]


def write_predictions(path: Path, texts: List[str], gold: List[str], probs: np.ndarray) -> None:
    """Write one JSON line per text: text, gold label, predicted label, probabilities."""
    import srsly

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = (
        {"text": t, "gold": g, "pred": LABELS[int(np.argmax(p))], "probs": {l: float(v) for l, v in zip(LABELS, p)}}
        for t, g, p in zip(texts, gold, probs)
    )
    srsly.write_jsonl(path, rows)


def read_predictions(path: Path):
    """Read `write_predictions` output. RETURNS: texts, gold labels, (n, 6) probabilities."""
    import srsly

    rows = list(srsly.read_jsonl(path))
    texts = [r["text"] for r in rows]
    gold = [r["gold"] for r in rows]
    probs = np.asarray([[r["probs"][l] for l in LABELS] for r in rows], dtype="float32").reshape(-1, len(LABELS))
    return texts, gold, probs
