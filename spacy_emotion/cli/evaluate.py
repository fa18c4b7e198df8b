"""`spacy-emotion evaluate`: test-split metrics as JSON."""

from pathlib import Path
from typing import Optional

import srsly
import typer
from wasabi import msg

from .app import app, require_extra


@app.command("evaluate")
def evaluate_cli(
    model: str = typer.Argument(..., help="Trained pipeline directory or package name"),
    corpus: Path = typer.Argument(..., help="DocBin corpus (e.g. corpus/test.spacy)", exists=True, dir_okay=False),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the metrics JSON"),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU id, -1 for the CPU"),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Texts per batch"),
    predictions: Optional[Path] = typer.Option(
        None,
        "--predictions",
        "-p",
        help="Also write each text's gold label and probabilities (jsonl) for the analysis commands",
    ),
) -> None:
    """Evaluate a trained emotion pipeline on a corpus and write metrics JSON."""
    require_extra("train", "sklearn")
    import spacy

    from ..training.metrics import compute_metrics, predict_corpus, predicted_labels, write_predictions

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    texts, gold, probs = predict_corpus(model, corpus, batch_size)
    metrics = compute_metrics(gold, predicted_labels(probs))
    output.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output, metrics)
    rows = [
        (label, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", m["support"])
        for label, m in metrics["per_class"].items()
    ]
    msg.table(
        rows, header=("label", "precision", "recall", "f1", "support"), divider=True, aligns=("l", "r", "r", "r", "r")
    )
    msg.good(
        f"accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  weighted-F1 "
        f"{metrics['weighted_f1']:.4f} ({metrics['n']} docs)"
    )
    msg.good(f"Wrote {output}")
    if predictions is not None:
        write_predictions(predictions, texts, gold, probs)
        msg.good(f"Wrote {predictions}")
