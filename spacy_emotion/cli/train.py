"""`spacy-emotion train`: `spacy train`, with the last step of a short run evaluated.

spaCy evaluates at every `eval_frequency`-th step (step 0 included) and saves
`model-best` then. A run that `max_epochs` ends before its first evaluation
after step 0, such as a `--vars.limit 200` smoke run of the project (7 steps
an epoch, 3 epochs, evaluations every 200 steps), is evaluated only after its
first update: its `model-best` is the untrained model. This command counts the
steps such a run will take and, for it alone, sets `training.eval_frequency`
to its last step, so that step is evaluated (and saved if best). Every other
run is `spacy train` unchanged.
"""

import logging
import math
from pathlib import Path
from typing import Any, Dict, Optional

import typer
from wasabi import msg

from .app import app


def last_step(training: Dict[str, Any], n_train: int) -> Optional[int]:
    """The step (counted from 0) of a run's last update, or None when it isn't
    known in advance.

    training (Dict[str, Any]): the interpolated `[training]` block of a config.
    n_train (int): the number of training examples.
    RETURNS (Optional[int]): the last step, or None for batches of varying
        count, no training examples, or a run without max_epochs or max_steps.
    """
    batcher = training["batcher"]
    size = batcher.get("size")
    if (
        batcher.get("@batchers") != "spacy.batch_by_sequence.v1"
        or batcher.get("get_length") is not None
        or not isinstance(size, int)
    ):
        return None  # batches of varying count: the number of steps is not known in advance
    if n_train <= 0:
        return None
    ends = []  # the step each limit stops the run at; the first to come ends it
    if training["max_epochs"] > 0:
        ends.append(training["max_epochs"] * math.ceil(n_train / size) - 1)
    if training["max_steps"]:
        ends.append(training["max_steps"])
    return min(ends, default=None)


def last_step_eval_frequency(training: Dict[str, Any], n_train: int) -> Optional[int]:
    """The eval_frequency that evaluates the last step of a run that max_epochs
    ends before its first evaluation after step 0, or None when there is no such gap.

    training (Dict[str, Any]): the interpolated `[training]` block of a config.
    n_train (int): the number of training examples.
    RETURNS (Optional[int]): the step (counted from 0) of the run's last update.
    """
    if training["max_epochs"] <= 0:
        return None  # the run is ended by max_steps, which the config's schedule aims at
    last = last_step(training, n_train)
    return last if last is not None and 0 < last < training["eval_frequency"] else None


@app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train_cli(
    ctx: typer.Context,
    config_path: Path = typer.Argument(..., help="Training config, e.g. configs/trf.cfg", exists=True, dir_okay=False),
    output_path: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to save model-best and model-last"),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU id, -1 for the CPU"),
) -> None:
    """`spacy train CONFIG` with its config overrides (--paths.train ... --training.X ...);
    a run that max_epochs ends before its first evaluation is also evaluated at its last step."""
    from spacy.cli._util import parse_config_overrides, show_validation_error
    from spacy.cli.train import train
    from spacy.tokens import DocBin
    from spacy.util import load_config, logger

    logger.setLevel(logging.INFO)  # as spacy train without --verbose
    overrides = parse_config_overrides(ctx.args)
    with show_validation_error(config_path):
        config = load_config(config_path, overrides=overrides, interpolate=True)
    corpus = config["corpora"]["train"]
    n_train = 0
    if (
        corpus.get("@readers") == "spacy.Corpus.v1"
        and not corpus.get("max_length")
        and Path(str(corpus["path"])).is_file()
    ):
        n_train = len(DocBin().from_disk(corpus["path"]))
        if corpus.get("limit"):
            n_train = min(n_train, corpus["limit"])
    last = last_step_eval_frequency(config["training"], n_train)
    if last is not None:
        msg.info(
            f"{n_train} training examples: max_epochs {config['training']['max_epochs']} ends the run at step {last}, "
            f"before its first evaluation at step {config['training']['eval_frequency']}; "
            f"evaluating at step {last} as well (training.eval_frequency = {last})"
        )
        overrides["training.eval_frequency"] = last
    train(config_path, output_path, use_gpu=gpu_id, overrides=overrides)
