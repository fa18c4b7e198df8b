"""The REST API and web page: ``spacy-emotion serve`` (FastAPI + uvicorn).

Endpoints (OpenAPI docs at ``/docs``):

* ``POST /predict`` ``{"text": str, "sentences": bool = false}`` -> ``{"emotion",
  "score", "cats", ["sentences"]}`` (the dict of `classify.doc_result`).
* ``POST /predict/batch`` ``{"texts": [str, ...], "sentences": bool = false}``
  -> ``{"results": [...]}`` in the order of ``texts``.
* ``GET /health``: model loaded, versions, limits, batching statistics.
* ``GET /labels``: the six labels in model order.
* ``GET /``: the web page (``spacy_emotion/serving/static``).

Limits (413 beyond, checked before the model runs): ``max_chars`` characters
per text (default :data:`DEFAULT_MAX_CHARS`), ``max_batch`` texts per batch
request (default :data:`DEFAULT_MAX_BATCH`), and a Content-Length over what
those allow. Malformed JSON, wrong types or unknown fields: 422 with the
pydantic errors in ``detail`` and a one-line ``message``. A text that no UTF-8
text can hold (a lone surrogate, such as JSON's ``"\\ud800"``): 422 with the
reason in ``detail``.

The model is loaded once, before the app is returned, and runs in one worker
thread so the event loop stays free. With ``batching`` (the default), a
:class:`Batcher` groups the texts of concurrent requests into one model call:
it takes what is queued, waits at most ``batch_wait_ms`` for more, and stops
collecting at ``max_batch_texts`` texts. Requests that arrive while the model
is busy queue up and form the next batch: under load batches grow by
themselves, and an idle server answers a lone request at once (the default
wait is 0). If a grouped model call fails, each of its requests runs again
alone, so only a request whose own texts fail gets the error (500).

Overload: at most ``max_queue`` requests (default :data:`DEFAULT_MAX_QUEUE`)
wait for or are in a model call at once. A request beyond that is answered
at once with 503 and a ``Retry-After`` header instead of waiting without
bound; ``/health`` and ``/labels`` never queue. A client that disconnects
while its request waits costs no error: with batching its texts are dropped
from the queue if no model call has taken them yet; otherwise (and without
batching) the call finishes and the answer is discarded.
"""

import asyncio
import ipaddress
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Dict, List, Optional, Union

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr
from spacy.language import Language

from ..texts import invalid_text
from .classify import build_pipeline, classify, model_info, set_cpu_threads

DEFAULT_MAX_CHARS = 10_000
"""Characters per text. dair-ai/emotion texts are under 300; 10,000 fits a
long review or a few pages, and bounds the CPU one request can take."""
DEFAULT_MAX_BATCH = 64
"""Texts per ``/predict/batch`` request."""
DEFAULT_BATCH_WAIT_MS = 0.0
"""How long to wait for more requests before a model call. 0: take only what
queued up while the model was busy (docs/rest.md); a few ms can help when
requests arrive in bursts."""
DEFAULT_MAX_BATCH_TEXTS = 64
"""Texts per model call when grouping requests (a batch request is never split)."""
DEFAULT_MAX_QUEUE = 256
"""Requests waiting for or in a model call at once; beyond it 503 with Retry-After.
Large enough that a few hundred clients that wait for their answers are never
shed, small enough to bound the memory and the wait of queued requests."""
RETRY_AFTER_S = 1
"""The Retry-After of a 503 (seconds): about the time a full queue takes to drain
with a small model on a CPU."""
STATIC_DIR = Path(__file__).parent / "static"


# ---- schemas ---------------------------------------------------------------


class PredictRequest(BaseModel):
    """One text to classify."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "I can't believe we won! I'm so happy.", "sentences": True}]},
    )
    text: StrictStr = Field(..., description="The text (at most the server's max_chars characters)")
    sentences: StrictBool = Field(False, description="Also classify every sentence")


class BatchRequest(BaseModel):
    """Several texts to classify in one call."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"texts": ["I feel so alone.", "What a lovely surprise!"]}]}
    )
    texts: List[StrictStr] = Field(..., min_length=1, description="The texts (at most max_batch of them)")
    sentences: StrictBool = Field(False, description="Also classify every sentence")


class SentenceResult(BaseModel):
    text: str
    start_char: int = Field(..., description="Offset of the sentence in the text, in Unicode code points")
    end_char: int
    emotion: Optional[str] = Field(..., description="Top emotion, null below the threshold or for blank text")
    score: Optional[float]
    cats: Dict[str, float] = Field(..., description="The six probabilities, in label order")


class PredictResult(BaseModel):
    emotion: Optional[str] = Field(..., description="Top emotion, null below the threshold or for blank text")
    score: Optional[float] = Field(..., description="Probability of the top emotion")
    cats: Dict[str, float] = Field(..., description="The six probabilities (sum 1), in label order")
    sentences: Optional[List[SentenceResult]] = Field(None, description="Only when sentences=true")


class BatchResult(BaseModel):
    results: List[PredictResult]


class LabelsResult(BaseModel):
    labels: List[str]


class ErrorResult(BaseModel):
    """A 413, 500 or 503 answer: what went wrong."""

    detail: str


class ValidationErrorResult(BaseModel):
    """A 422 answer: the pydantic errors (a list) or the reason (a string), and one line."""

    detail: Union[List[Dict[str, Any]], str]
    message: Optional[str] = Field(None, description="The errors in one line (absent when detail is a string)")


# ---- batching --------------------------------------------------------------


@dataclass
class _Pending:
    texts: List[str]
    sentences: bool
    future: asyncio.Future


class Overloaded(Exception):
    """The request queue is full: the request is shed (503 with Retry-After)."""


@dataclass
class Batcher:
    """Run the model in one worker thread, grouping concurrent requests.

    enabled (bool): group requests; False runs each request's texts alone.
    max_wait_s (float): longest wait for more requests once one is queued.
    max_texts (int): stop collecting once a group has this many texts.
    cpu_threads (int): torch threads of the model thread (0: torch's default).
    max_queue (int): requests waiting for or in a model call at once; one more
        raises `Overloaded`.
    """

    nlp: Language
    enabled: bool = True
    max_wait_s: float = DEFAULT_BATCH_WAIT_MS / 1000
    max_texts: int = DEFAULT_MAX_BATCH_TEXTS
    cpu_threads: int = 0
    max_queue: int = DEFAULT_MAX_QUEUE
    stats: Dict[str, int] = field(default_factory=lambda: {"model_calls": 0, "requests": 0, "texts": 0})

    def __post_init__(self) -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="emotion-model", initializer=set_cpu_threads, initargs=(self.cpu_threads,)
        )
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._queue: Optional[asyncio.Queue] = None
        self._task: Optional[asyncio.Task] = None
        self.queued = 0  # requests admitted whose work is not done or dropped yet
        self.shed = 0  # requests refused with Overloaded

    def _run_model(self, texts: List[str], sentences: bool) -> List[Dict[str, Any]]:
        self.stats["model_calls"] += 1
        self.stats["texts"] += len(texts)
        return list(classify(self.nlp, texts, batch_size=max(1, len(texts)), sentences=sentences))

    async def classify(self, texts: List[str], sentences: bool = False) -> List[Dict[str, Any]]:
        """RETURNS (List[Dict]): `classify.doc_result` of each text, in order.
        RAISES Overloaded: `max_queue` requests are already queued."""
        if self.queued >= self.max_queue:
            self.shed += 1
            raise Overloaded(f"{self.queued} requests are queued, the limit is {self.max_queue}: try again later")
        self.stats["requests"] += 1
        loop = asyncio.get_running_loop()
        if not self.enabled:
            work = loop.run_in_executor(self._executor, self._run_model, texts, sentences)
        else:
            self._ensure_worker(loop)
            work = loop.create_future()
            self._queue.put_nowait(_Pending(texts, sentences, work))
        # the slot is freed when the work is done or dropped, not when the client leaves:
        # the executor's own queue stays bounded too
        self.queued += 1
        work.add_done_callback(self._release)
        # a caller that goes away cancels the grouped request (the worker skips it);
        # a request running alone can't be stopped and finishes in the thread
        return await (work if self.enabled else asyncio.shield(work))

    def _release(self, work: asyncio.Future) -> None:
        self.queued -= 1
        if not work.cancelled():
            work.exception()  # retrieved: no "never retrieved" warning when the caller has gone

    def _ensure_worker(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the grouping task in this event loop (again, if the loop changed)."""
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop, self._queue = loop, asyncio.Queue()
            self._task = loop.create_task(self._worker())

    async def stop(self) -> None:
        """Cancel the grouping task (the app's shutdown)."""
        if self._task is not None and self._loop is asyncio.get_running_loop():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._task = None

    async def _collect(self) -> List[_Pending]:
        """Wait for a request, then take more until max_texts or max_wait_s."""
        loop = asyncio.get_running_loop()
        group = [await self._queue.get()]
        n_texts = len(group[0].texts)
        deadline = loop.time() + self.max_wait_s
        while n_texts < self.max_texts:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            group.append(item)
            n_texts += len(item.texts)
        return group

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            group = await self._collect()
            for sentences in (False, True):  # one model call per setting
                members = [p for p in group if p.sentences == sentences and not p.future.done()]
                if not members:
                    continue
                texts = [text for p in members for text in p.texts]
                try:
                    results = await loop.run_in_executor(self._executor, self._run_model, texts, sentences)
                except Exception as err:
                    if len(members) == 1:  # the request fails (500), the worker goes on
                        if not members[0].future.done():
                            members[0].future.set_exception(err)
                        continue
                    # one request's texts may have failed the whole call: run each
                    # request alone, so only the one that fails gets the error
                    for p in members:
                        await self._run_alone(loop, p)
                    continue
                start = 0
                for p in members:
                    if not p.future.done():  # the client may have gone
                        p.future.set_result(results[start : start + len(p.texts)])
                    start += len(p.texts)

    async def _run_alone(self, loop: asyncio.AbstractEventLoop, pending: _Pending) -> None:
        if pending.future.done():
            return
        try:
            result = await loop.run_in_executor(self._executor, self._run_model, pending.texts, pending.sentences)
        except Exception as err:
            if not pending.future.done():
                pending.future.set_exception(err)
            return
        if not pending.future.done():
            pending.future.set_result(result)


# ---- the app ---------------------------------------------------------------


@dataclass
class Limits:
    max_chars: int = DEFAULT_MAX_CHARS
    max_batch: int = DEFAULT_MAX_BATCH

    @property
    def max_body_bytes(self) -> int:
        """Largest Content-Length accepted: every text at the limit, fully JSON-escaped."""
        return self.max_batch * self.max_chars * 12 + 64 * 1024


class _BodyLimit:
    """ASGI middleware: 413 for a request whose Content-Length is over the limit."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_bytes:
                response = JSONResponse({"detail": f"Request body over {self.max_bytes:,} bytes"}, status_code=413)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _validation_message(errors: List[Dict[str, Any]]) -> str:
    """One line for a 422: 'body.text: Input should be a valid string; ...'."""
    parts = []
    for error in errors:
        loc = error.get("loc") or ()
        if error.get("type") == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "")
            parts.append(f"Malformed JSON at character {loc[-1] if loc else '?'}: {reason}".rstrip(": "))
        else:
            parts.append(f"{'.'.join(str(p) for p in loc)}: {error.get('msg')}")
    return "; ".join(parts) or "Invalid request"


RETRY_AFTER_HEADER = {
    "Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}
}
ERROR_RESPONSES: Dict[Union[int, str], Dict[str, Any]] = {
    400: {"model": ErrorResult, "description": "The body can't be read as text (not UTF-8)"},
    422: {"model": ValidationErrorResult, "description": "Invalid request"},
    500: {"model": ErrorResult, "description": "The model failed on the request's texts"},
    503: {"model": ErrorResult, "description": "Overloaded: the request queue is full", "headers": RETRY_AFTER_HEADER},
}
"""The error answers of the predict endpoints, declared in the OpenAPI schema."""


def _openapi_with_limits(app: FastAPI, limits: Limits) -> Dict[str, Any]:
    """The OpenAPI schema with this server's limits (maxLength, maxItems) on the
    request schemas: they are checked in the endpoints (413), not by pydantic (422)."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        models = schema["components"]["schemas"]
        models["PredictRequest"]["properties"]["text"]["maxLength"] = limits.max_chars
        texts = models["BatchRequest"]["properties"]["texts"]
        texts["maxItems"] = limits.max_batch
        texts["items"]["maxLength"] = limits.max_chars
        app.openapi_schema = schema
    return app.openapi_schema


CLIENT_GONE = 499
"""The status of the answer to a client that disconnected (nobody reads it; nginx's code)."""


async def _disconnected(request: Request) -> None:
    """Return once the client has disconnected (the body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_gone(request: Request, work: Awaitable[Any]) -> Any:
    """Await `work`, or cancel it if the client disconnects first (a queued request is dropped)."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        gone = not task.done()
        if gone:
            task.cancel()
    return Response(status_code=CLIENT_GONE) if gone else task.result()


def _too_large(detail: str) -> HTTPException:
    return HTTPException(status_code=413, detail=detail)


def create_app(
    model: Union[str, Language],
    *,
    threshold: float = 0.0,
    gpu_id: int = -1,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_batch: int = DEFAULT_MAX_BATCH,
    batching: bool = True,
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
    max_batch_texts: int = DEFAULT_MAX_BATCH_TEXTS,
    cpu_threads: int = 0,
    speed: Optional[Dict[str, Any]] = None,
    max_queue: int = DEFAULT_MAX_QUEUE,
) -> FastAPI:
    """Build the app, loading the model now (not on the first request).

    model (Union[str, Language]): a model for `classify.build_pipeline`, or
        a pipeline it built (threshold and gpu_id are then ignored).
    cpu_threads (int): torch threads for the model (0: torch's default; see
        `classify.set_cpu_threads`).
    speed (Optional[Dict[str, Any]]): speed settings of emotion_classifier
        (`runtime`, `quantize`, ...) for `classify.build_pipeline`.
    max_queue (int): requests waiting for or in a model call at once (503 beyond).
    RETURNS (FastAPI): the app; run it with uvicorn.
    """
    from .. import __version__

    nlp = (
        model if isinstance(model, Language) else build_pipeline(model, threshold=threshold, gpu_id=gpu_id, speed=speed)
    )
    info = model_info(nlp)
    if max_queue < 1:
        raise ValueError(f"max_queue must be at least 1, got {max_queue}")
    limits = Limits(max_chars=max_chars, max_batch=max_batch)
    batcher = Batcher(
        nlp,
        enabled=batching,
        max_wait_s=batch_wait_ms / 1000,
        max_texts=max_batch_texts,
        cpu_threads=cpu_threads,
        max_queue=max_queue,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await batcher.stop()

    app = FastAPI(
        title="spacy-emotion",
        version=__version__,
        description=(
            "Emotion classification (sadness, joy, love, anger, fear, surprise) with the spaCy "
            f"`emotion_classifier`. Limits: {limits.max_chars:,} characters per text, "
            f"{limits.max_batch} texts per batch request (413 beyond); {max_queue} requests queued "
            "at once (503 with Retry-After beyond)."
        ),
        lifespan=lifespan,
    )
    app.state.nlp, app.state.batcher, app.state.limits = nlp, batcher, limits
    app.openapi = lambda: _openapi_with_limits(app, limits)
    app.add_middleware(_BodyLimit, max_bytes=limits.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = jsonable_encoder(exc.errors())
        return JSONResponse({"detail": errors, "message": _validation_message(errors)}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # a JSON 500 as the schema says (Starlette's default is plain text); uvicorn still logs the traceback
        return JSONResponse({"detail": f"Internal server error ({type(exc).__name__}); see the server log"}, 500)

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, exc: Overloaded) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})

    def check_text(text: str, where: str = "text") -> None:
        if len(text) > limits.max_chars:
            raise _too_large(f"{where} has {len(text):,} characters; the limit is {limits.max_chars:,}")
        error = invalid_text(text)
        if error:
            raise HTTPException(status_code=422, detail=f"{where} is {error}")

    @app.post(
        "/predict",
        response_model=PredictResult,
        response_model_exclude_unset=True,
        responses={413: {"model": ErrorResult, "description": "Text over the character limit"}, **ERROR_RESPONSES},
    )
    async def predict(body: PredictRequest, request: Request) -> Any:
        """Classify one text: the top emotion, its score and the six probabilities."""
        check_text(body.text)
        results = await _unless_gone(request, batcher.classify([body.text], body.sentences))
        return results if isinstance(results, Response) else results[0]

    @app.post(
        "/predict/batch",
        response_model=BatchResult,
        response_model_exclude_unset=True,
        responses={
            413: {"model": ErrorResult, "description": "Too many texts, or a text over the character limit"},
            **ERROR_RESPONSES,
        },
    )
    async def predict_batch(body: BatchRequest, request: Request) -> Any:
        """Classify several texts; results are in the order of `texts`."""
        if len(body.texts) > limits.max_batch:
            raise _too_large(f"{len(body.texts)} texts; the limit is {limits.max_batch} per request")
        for i, text in enumerate(body.texts):
            check_text(text, f"texts[{i}]")
        results = await _unless_gone(request, batcher.classify(body.texts, body.sentences))
        return results if isinstance(results, Response) else {"results": results}

    @app.get("/health")
    async def health() -> Dict[str, Any]:
        """The model is loaded; versions, limits and batching statistics."""
        return {
            "status": "ok",
            "model_loaded": True,
            "version": __version__,
            **{
                k: info[k]
                for k in ("model", "backend", "model_version", "threshold", "runtime", "linear_layers", "fast_path")
            },
            "limits": {
                "max_chars": limits.max_chars,
                "max_batch": limits.max_batch,
                "max_body_bytes": limits.max_body_bytes,
            },
            "batching": {
                "enabled": batcher.enabled,
                "max_wait_ms": batcher.max_wait_s * 1000,
                "max_texts": batcher.max_texts,
                **batcher.stats,
            },
            "queue": {"max_requests": batcher.max_queue, "queued": batcher.queued, "shed": batcher.shed},
            "cpu_threads": batcher.cpu_threads or None,
        }

    @app.get("/labels", response_model=LabelsResult)
    async def labels() -> Any:
        """The six emotion labels, in the order of `cats`."""
        return {"labels": info["labels"]}

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(
    app: FastAPI, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info", access_log: bool = True
) -> None:
    """Serve `app` with uvicorn (one process: the model is loaded once)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log)


__all__ = [
    "create_app",
    "run",
    "Batcher",
    "Overloaded",
    "is_loopback",
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_QUEUE",
]
