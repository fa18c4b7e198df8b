"""`spacy-emotion serve`: the REST API and the web page."""

import typer
from wasabi import msg

from .app import LOAD_ERRORS, QUANTIZE_OPTION, RUNTIME_OPTION, app, require_extra, speed_config

# the defaults live in spacy_emotion.serving.rest; repeated here so `--help` can show them without importing FastAPI
MAX_CHARS, MAX_BATCH, BATCH_WAIT_MS, MAX_BATCH_TEXTS, MAX_QUEUE = 10_000, 64, 0.0, 64, 256


@app.command("serve")
def serve_cli(
    model: str = typer.Option(
        "en_emotion_trf", "--model", "-m", help="Trained pipeline directory, package name or HF checkpoint directory"
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; 0.0.0.0 exposes the API to the network"),
    port: int = typer.Option(8000, "--port", "-p", help="TCP port"),
    threshold: float = typer.Option(
        0.0, "--threshold", "-t", min=0.0, max=1.0, help="Below this probability no emotion is given"
    ),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU id, -1 for the CPU"),
    max_chars: int = typer.Option(MAX_CHARS, "--max-chars", min=1, help="Characters per text (413 beyond)"),
    max_batch: int = typer.Option(
        MAX_BATCH, "--max-batch", min=1, help="Texts per /predict/batch request (413 beyond)"
    ),
    batching: bool = typer.Option(
        True, "--batching/--no-batching", help="Group concurrent requests into one model call"
    ),
    batch_wait_ms: float = typer.Option(
        BATCH_WAIT_MS,
        "--batch-wait-ms",
        min=0.0,
        help="Wait for more requests before a model call (0: group only what queued while the model was busy)",
    ),
    max_batch_texts: int = typer.Option(
        MAX_BATCH_TEXTS, "--max-batch-texts", min=1, help="Texts per grouped model call"
    ),
    max_queue: int = typer.Option(
        MAX_QUEUE,
        "--max-queue",
        min=1,
        help="Requests waiting for or in a model call at once (503 with Retry-After beyond)",
    ),
    threads: int = typer.Option(
        0,
        "--threads",
        min=0,
        help="torch threads for the model (0: torch's default, one per core; 1 is often faster on a busy machine)",
    ),
    runtime: str = RUNTIME_OPTION,
    quantize: str = QUANTIZE_OPTION,
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level"),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="Log every request"),
) -> None:
    """Serve POST /predict, POST /predict/batch, GET /health, GET /labels, /docs and the web page at /."""
    require_extra("serve", "fastapi", "uvicorn", "pydantic")
    from ..serving.rest import create_app, is_loopback, run

    try:
        api = create_app(
            model,
            threshold=threshold,
            gpu_id=gpu_id,
            max_chars=max_chars,
            max_batch=max_batch,
            batching=batching,
            batch_wait_ms=batch_wait_ms,
            max_batch_texts=max_batch_texts,
            cpu_threads=threads,
            max_queue=max_queue,
            speed=speed_config(runtime, quantize),
        )
    except LOAD_ERRORS as err:
        msg.fail(f"Can't load the emotion model: {err}", exits=2)
    if not is_loopback(host):
        msg.warn(f"Binding {host}: the API (no authentication) is reachable from other machines")
    msg.good(f"Model loaded: {model}. Web page: http://{host}:{port}/  API docs: http://{host}:{port}/docs")
    run(api, host=host, port=port, log_level=log_level, access_log=access_log)
