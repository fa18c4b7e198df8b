"""The typer app that every command module registers its commands on."""
import typer

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
