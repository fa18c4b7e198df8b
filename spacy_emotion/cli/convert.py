"""`spacy-emotion convert`: dataset to DocBin corpora."""

from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from ..training.corpus import convert
from ..training.dataset import DataError
from .app import app


@app.command("convert")
def convert_cli(
    output_dir: Path = typer.Argument(..., help="Folder for train.spacy, dev.spacy, test.spacy"),
    data: str = typer.Option("auto", "--data", help="'auto' (the Hub, else --fallback), 'hub', or a local folder"),
    fallback: Optional[Path] = typer.Option(
        None, "--fallback", help="Local data folder used by 'auto' when the Hub is unreachable"
    ),
    limit: int = typer.Option(0, "--limit", help="Reproducible sample of N examples per split (0 = all)"),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip and count bad rows instead of failing"),
    lang: str = typer.Option("en", "--lang", help="Language of the tokenizer"),
    seed: int = typer.Option(0, "--seed", help="Seed of the --limit sample"),
) -> None:
    """Convert dair-ai/emotion (Hub or local txt/jsonl/csv/parquet) into DocBin corpora."""
    try:
        convert(output_dir, data, fallback, limit, skip_invalid, lang, seed)
    except (DataError, FileNotFoundError, ValueError, RuntimeError) as err:
        msg.fail("Could not convert the data", str(err), exits=1)
