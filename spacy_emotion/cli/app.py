"""The typer app that every command module registers its commands on, and
the options several commands share."""

import importlib.util
from typing import Any, Dict

import typer
from wasabi import msg

from ..component.speed import QUANTIZE_MODES, RUNTIMES

app = typer.Typer(
    name="spacy-emotion",
    help="Emotion classification with spaCy: data conversion, evaluation, prediction and serving.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main() -> None:
    """Emotion classification with spaCy."""


RUNTIME_OPTION = typer.Option(
    "torch",
    "--runtime",
    help=f"What runs the transformer: {' or '.join(RUNTIMES)} (ONNX Runtime on the CPU; needs the onnx extra)",
)
QUANTIZE_OPTION = typer.Option(
    "auto",
    "--quantize",
    help=f"Number format of the transformer: {', '.join(QUANTIZE_MODES)} (the component's quantize setting; "
    "see docs/speed.md)",
)


LOAD_ERRORS = (OSError, ValueError, ImportError)
"""What loading the emotion model raises for a user's mistake: a model that
isn't there (predictors.ModelNotFoundError is an OSError), a bad setting, or
a missing extra (runtime "onnx" without onnxruntime). The commands turn these
into a message and their "nothing done" exit code."""


def require_extra(extra: str, *modules: str) -> None:
    """Exit 2 with the pip command to run when a module of an optional extra
    of the package (setup.cfg's extras_require) is not installed."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        msg.fail(
            f"This command needs the '{extra}' extra: {', '.join(missing)} not installed",
            f'pip install "spacy-emotion[{extra}]"',
            exits=2,
        )


def speed_config(runtime: str, quantize: str) -> Dict[str, Any]:
    """The component settings of --runtime and --quantize (checked when the model loads)."""
    return {"runtime": runtime, "quantize": quantize}
