"""`spacy-emotion hf-baseline`: a plain Hugging Face fine-tune of the backbone, scored as `evaluate` scores."""

from pathlib import Path
from typing import List, Optional

import typer
from wasabi import msg

from ..training.dataset import DataError
from ..training.hf_finetune import FinetuneSettings, finetune
from .app import app, require_extra

PROGRESS_EVERY = 25
"""Training steps between two progress lines."""


@app.command("hf-baseline")
def hf_baseline_cli(
    output: Path = typer.Argument(..., help="Folder for metrics-dev.json, metrics-test.json, settings.json, model/"),
    data: str = typer.Option("auto", "--data", help="'auto' (the Hub, else --fallback), 'hub', or a local folder"),
    fallback: Optional[Path] = typer.Option(
        None, "--fallback", help="Local data folder used by 'auto' when the Hub is unreachable"
    ),
    backbone: str = typer.Option(FinetuneSettings.backbone, "--backbone", help="Hub id, local folder or 'minilm'"),
    epochs: int = typer.Option(FinetuneSettings.epochs, "--epochs", help="Passes over the training split"),
    batch_size: int = typer.Option(FinetuneSettings.batch_size, "--batch-size", help="Training texts per step"),
    learn_rate: float = typer.Option(FinetuneSettings.learn_rate, "--learn-rate", help="Peak learning rate (AdamW)"),
    warmup_ratio: float = typer.Option(
        FinetuneSettings.warmup_ratio, "--warmup-ratio", help="Share of the steps the learning rate warms up over"
    ),
    weight_decay: float = typer.Option(FinetuneSettings.weight_decay, "--weight-decay", help="AdamW weight decay"),
    max_grad_norm: float = typer.Option(
        FinetuneSettings.max_grad_norm, "--max-grad-norm", help="Global gradient norm clip (0: none)"
    ),
    seed: int = typer.Option(FinetuneSettings.seed, "--seed", help="Seed of the initialisation, shuffling and dropout"),
    limit: int = typer.Option(0, "--limit", help="Reproducible sample of N examples per split (0 = all)"),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU id, -1 for the CPU"),
    save_model: bool = typer.Option(True, "--save-model/--no-save-model", help="Save the checkpoint in OUTPUT/model"),
) -> None:
    """Fine-tune AutoModelForSequenceClassification on the emotion splits; score validation and test."""
    require_extra("train", "sklearn")
    settings = FinetuneSettings(
        backbone=backbone,
        epochs=epochs,
        batch_size=batch_size,
        learn_rate=learn_rate,
        warmup_ratio=warmup_ratio,
        weight_decay=weight_decay,
        max_grad_norm=max_grad_norm,
        seed=seed,
        limit=limit,
    )
    device = f"cuda:{gpu_id}" if gpu_id >= 0 else "cpu"
    losses: List[float] = []

    def progress(step: int, steps: int, loss: float, seconds: float) -> None:
        losses.append(loss)
        if step % PROGRESS_EVERY == 0 or step == steps:
            mean = sum(losses) / len(losses)
            msg.text(f"step {step}/{steps}: mean loss {mean:.4f}, {seconds / step:.2f} s/step, {seconds / 60:.1f} min")
            losses.clear()

    try:
        metrics = finetune(
            data, output, settings, fallback=fallback, device=device, save_model=save_model, progress=progress
        )
    except (DataError, FileNotFoundError, ValueError, RuntimeError) as err:
        msg.fail("Could not fine-tune the baseline", str(err), exits=1)
    for name, scores in metrics.items():
        msg.good(
            f"{name}: accuracy {scores['accuracy']:.4f}  macro-F1 {scores['macro_f1']:.4f}  "
            f"weighted-F1 {scores['weighted_f1']:.4f} ({scores['n']} texts)"
        )
    msg.good(f"Wrote {output}")
