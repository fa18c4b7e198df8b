"""`spacy-emotion annotate`: classify every row of a .txt/.jsonl/.csv file."""

from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from .app import LOAD_ERRORS, QUANTIZE_OPTION, RUNTIME_OPTION, app, speed_config

EXIT_OK = 0
EXIT_ROWS_FAILED = 1
EXIT_BAD_JOB = 2
EXIT_INTERRUPTED = 130


@app.command("annotate")
def annotate_cli(
    input_path: Path = typer.Argument(..., metavar="INPUT", help=".txt (one text a line), .jsonl or .csv"),
    output_path: Path = typer.Argument(..., metavar="OUTPUT", help=".jsonl or .csv"),
    model: str = typer.Option(
        "en_emotion_trf", "--model", "-m", help="Trained pipeline directory, package name or HF checkpoint directory"
    ),
    text_field: str = typer.Option("text", "--text-field", help="Field holding the text (.jsonl input)"),
    text_column: str = typer.Option("text", "--text-column", help="Column holding the text (.csv input)"),
    id_field: str = typer.Option(
        "id", "--id-field", "--id-column", help="Field/column copied to the output as 'id' when present"
    ),
    sentences: bool = typer.Option(False, "--sentences", "-s", help="Also classify every sentence"),
    threshold: float = typer.Option(
        0.0, "--threshold", "-t", min=0.0, max=1.0, help="Below this probability no emotion is given"
    ),
    batch_size: int = typer.Option(64, "--batch-size", "-b", min=1, help="Rows per model call and per checkpoint"),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU id, -1 for the CPU"),
    threads: int = typer.Option(
        0, "--threads", min=0, help="torch threads on the CPU (0: torch's default, one per core)"
    ),
    runtime: str = RUNTIME_OPTION,
    quantize: str = QUANTIZE_OPTION,
    errors: Optional[Path] = typer.Option(
        None, "--errors", help="Errors file (.jsonl); default: OUTPUT with the suffix .errors.jsonl"
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Start again: discard an existing output, errors file and checkpoint"
    ),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Progress bar (bytes read, rate, ETA, rows) on a terminal"
    ),
) -> None:
    """Annotate every row of INPUT with emotions into OUTPUT, streaming and resumable.

    Interrupted (Ctrl-C, kill -9, a crash)? Run the same command again: it
    continues after the last checkpoint and the finished OUTPUT has every
    row exactly once, in input order. Rows that can't be processed go to the
    errors file with their line number and reason.

    Exit codes: 0 every row annotated; 1 finished, but some rows failed (see
    the errors file); 2 bad arguments, input or checkpoint (nothing done);
    130 interrupted (rerun to resume).
    """
    from ..serving.annotate_files import AnnotateError, Job, annotate, check_job

    text_key = text_column if input_path.suffix.lower() == ".csv" else text_field
    if input_path.suffix.lower() == ".csv" and text_field != "text":
        msg.fail("--text-field is for .jsonl input; use --text-column for .csv", exits=EXIT_BAD_JOB)
    if input_path.suffix.lower() != ".csv" and text_column != "text":
        msg.fail("--text-column is for .csv input; use --text-field for .jsonl", exits=EXIT_BAD_JOB)
    job = Job(
        input=input_path,
        output=output_path,
        model=model,
        threshold=threshold,
        text_key=text_key,
        id_key=id_field,
        sentences=sentences,
        batch_size=batch_size,
        errors=errors,
    )
    try:
        resume = check_job(job, overwrite)  # fail before the (slow) model load
    except AnnotateError as err:
        msg.fail(str(err), exits=EXIT_BAD_JOB)
    if resume is not None:
        msg.info(f"Resuming after row {resume.rows:,} (input line {resume.line:,}) from {job.checkpoint}")
    from ..serving.classify import set_cpu_threads

    set_cpu_threads(threads)
    nlp = _load(model, threshold, gpu_id, speed_config(runtime, quantize))
    try:
        summary = annotate(job, nlp, overwrite=overwrite, progress_bar=progress)
    except AnnotateError as err:
        msg.fail(str(err), exits=EXIT_BAD_JOB)
    except KeyboardInterrupt:
        msg.warn(f"Interrupted. Run the same command again to resume (checkpoint: {job.checkpoint})")
        raise typer.Exit(EXIT_INTERRUPTED)
    text = f"{summary.annotated:,} rows annotated into {summary.output}"
    if summary.blank:
        text += f"; {summary.blank:,} blank line{'' if summary.blank == 1 else 's'} skipped"
    if summary.resumed_at_row:
        text += f" (resumed after row {summary.resumed_at_row:,})"
    if summary.failed:
        msg.warn(f"{text}; {summary.failed:,} of {summary.rows:,} rows failed: see {summary.errors}")
        raise typer.Exit(EXIT_ROWS_FAILED)
    msg.good(text)


def _load(model: str, threshold: float, gpu_id: int, speed: dict):
    from ..serving.classify import build_pipeline

    try:
        return build_pipeline(model, threshold=threshold, gpu_id=gpu_id, speed=speed)
    except LOAD_ERRORS as err:
        msg.fail(f"Can't load the emotion model: {err}", exits=EXIT_BAD_JOB)
