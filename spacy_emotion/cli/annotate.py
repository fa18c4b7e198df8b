"""`spacy-emotion annotate`: classify every row of a .txt/.jsonl/.csv file, or
of a folder of files on a Ray cluster (`--engine ray`)."""

from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from .app import LOAD_ERRORS, QUANTIZE_OPTION, RUNTIME_OPTION, app, require_extra, speed_config

EXIT_OK = 0
EXIT_ROWS_FAILED = 1
EXIT_BAD_JOB = 2
EXIT_WRITE_FAILED = 3
EXIT_INTERRUPTED = 130
ENGINES = ("local", "ray")


@app.command("annotate")
def annotate_cli(
    input_path: Path = typer.Argument(
        ...,
        metavar="INPUT",
        help=".txt (one text a line), .jsonl or .csv; with --engine ray also .parquet, a folder or a glob",
    ),
    output_path: Path = typer.Argument(
        ..., metavar="OUTPUT", help=".jsonl or .csv; with --engine ray a folder of shards"
    ),
    model: str = typer.Option(
        "en_emotion_trf", "--model", "-m", help="Trained pipeline directory, package name or HF checkpoint directory"
    ),
    text_field: str = typer.Option("text", "--text-field", help="Field holding the text (.jsonl input)"),
    text_column: str = typer.Option("text", "--text-column", help="Column holding the text (.csv, .parquet input)"),
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
    engine: str = typer.Option(
        "local", "--engine", help="local: this process; ray: a pool of workers on a Ray cluster (the ray extra)"
    ),
    address: Optional[str] = typer.Option(
        None,
        "--address",
        help="[ray] Cluster to run on: auto, HOST:PORT or ray://HOST:10001; default: a local Ray for this job",
    ),
    workers: int = typer.Option(
        0, "--workers", min=0, help="[ray] Workers, each loading the model once (0: one per CPU, or per GPU share)"
    ),
    gpus_per_worker: float = typer.Option(
        0.0, "--gpus-per-worker", min=0.0, help="[ray] GPUs per worker; fractions share a GPU; 0: the CPU"
    ),
    output_format: str = typer.Option("parquet", "--format", help="[ray] Output shards: parquet or jsonl"),
    shard_rows: int = typer.Option(
        10_000, "--shard-rows", min=1, help="[ray] Rows per output shard (the unit a rerun skips when done)"
    ),
) -> None:
    """Annotate every row of INPUT with emotions into OUTPUT, streaming and resumable.

    Interrupted (Ctrl-C, kill -9, a crash)? Run the same command again: it
    continues after the last checkpoint and the finished OUTPUT has every
    row exactly once, in input order. Rows that can't be processed go to the
    errors file with their line number and reason.

    With --engine ray, INPUT may be a folder or glob of .txt, .jsonl, .csv and
    .parquet files and OUTPUT is a folder of shards (part-NNNNN.parquet or
    .jsonl), error rows in OUTPUT/_errors; a rerun skips the shards done.

    Exit codes: 0 every row annotated; 1 finished, but some rows failed (see
    the errors file); 2 bad arguments, input or checkpoint (nothing done);
    3 writing failed (a full disk, a file-size limit: make room and rerun to
    resume); 130 interrupted (rerun to resume).
    """
    if engine not in ENGINES:
        msg.fail(f"--engine must be {' or '.join(ENGINES)}, got {engine}", exits=EXIT_BAD_JOB)
    if engine == "ray":
        if errors is not None:
            msg.fail("--errors is for --engine local; the Ray engine writes errors to OUTPUT/_errors", exits=2)
        if gpu_id != -1:
            msg.fail("--gpu-id is for --engine local; use --gpus-per-worker with --engine ray", exits=EXIT_BAD_JOB)
        _annotate_ray(
            input_path,
            output_path,
            model=model,
            text_field=text_field,
            text_column=text_column,
            id_field=id_field,
            sentences=sentences,
            threshold=threshold,
            batch_size=batch_size,
            threads=threads,
            speed=speed_config(runtime, quantize),
            overwrite=overwrite,
            progress=progress,
            address=address,
            workers=workers,
            gpus_per_worker=gpus_per_worker,
            output_format=output_format,
            shard_rows=shard_rows,
        )
        return
    ray_only = {"--address": address is not None, "--workers": workers != 0, "--gpus-per-worker": gpus_per_worker}
    ray_only.update({"--format": output_format != "parquet", "--shard-rows": shard_rows != 10_000})
    used = [name for name, value in ray_only.items() if value]
    if used:
        msg.fail(f"{', '.join(used)}: for --engine ray only", exits=EXIT_BAD_JOB)
    from ..serving.annotate_files import AnnotateError, Job, OutputWriteError, annotate, check_job

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
    except OutputWriteError as err:
        msg.fail(
            f"{err}. Rows up to the last checkpoint are kept: make room and run the same command again to resume "
            f"(checkpoint: {job.checkpoint})",
            exits=EXIT_WRITE_FAILED,
        )
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


def _annotate_ray(
    input_path: Path,
    output_path: Path,
    *,
    model: str,
    text_field: str,
    text_column: str,
    id_field: str,
    sentences: bool,
    threshold: float,
    batch_size: int,
    threads: int,
    speed: dict,
    overwrite: bool,
    progress: bool,
    address: Optional[str],
    workers: int,
    gpus_per_worker: float,
    output_format: str,
    shard_rows: int,
) -> None:
    """`annotate --engine ray`: the job on a Ray cluster (see serving.annotate_ray)."""
    import os

    require_extra("ray", "ray", "pyarrow")
    from ..serving.annotate_files import AnnotateError
    from ..serving.annotate_ray import RayJob, check_ray_job, connect, run_job

    job = RayJob(
        input=str(input_path),
        output=output_path,
        model=model,
        threshold=threshold,
        text_field=text_field,
        text_column=text_column,
        id_key=id_field,
        sentences=sentences,
        batch_size=batch_size,
        format=output_format,
        shard_rows=shard_rows,
        rows_per_task=min(shard_rows, 1024),
        workers=workers,
        cpus_per_worker=float(max(threads, 1)),
        gpus_per_worker=gpus_per_worker,
        speed=speed,
    )
    try:
        _, resume = check_ray_job(job, overwrite)  # fail before starting Ray
    except AnnotateError as err:
        msg.fail(str(err), exits=EXIT_BAD_JOB)
    if resume:
        msg.info(f"Resuming the job in {output_path}: shards already written are skipped")
    import ray

    num_cpus = max(os.cpu_count() or 1, int(workers * job.cpus_per_worker)) if address is None else None
    try:
        started = connect(address, num_cpus)
    except (ConnectionError, RuntimeError, ValueError) as err:
        msg.fail(
            f"Can't connect to the Ray cluster at {address}: {err}",
            "A cluster with token authentication (Ray's default) needs RAY_AUTH_MODE=token and its token "
            "(RAY_AUTH_TOKEN, or the file ~/.ray/auth_token).",
            exits=EXIT_BAD_JOB,
        )
    try:
        summary = run_job(job, overwrite=overwrite, progress_bar=progress)
    except AnnotateError as err:
        msg.fail(str(err), exits=EXIT_BAD_JOB)
    except KeyboardInterrupt:
        msg.warn(f"Interrupted. Run the same command again to resume (shards written stay in {output_path})")
        raise typer.Exit(EXIT_INTERRUPTED)
    except ray.exceptions.RayError as err:
        msg.fail(f"The Ray job failed: {err}", "Shards already written stay; rerun to resume.", exits=EXIT_BAD_JOB)
    finally:
        if started:
            ray.shutdown()
    text = f"{summary.annotated:,} rows annotated into {summary.output} ({summary.shards:,} shards"
    text += f", {summary.skipped_shards:,} done before)" if summary.skipped_shards else ")"
    if summary.blank:
        text += f"; {summary.blank:,} blank line{'' if summary.blank == 1 else 's'} skipped"
    if summary.failed:
        errors_dir = summary.output / "_errors"
        msg.warn(f"{text}; {summary.failed:,} of {summary.rows:,} rows failed: see {errors_dir}")
        raise typer.Exit(EXIT_ROWS_FAILED)
    msg.good(text)
