"""`seqtune serve`: an HTTP prediction service (FastAPI) whose requests are micro-batched onto one model.

Concurrent requests are collected for a few milliseconds (up to a maximum batch), sorted by length, run as one
forward pass in a worker thread, and answered each with its own slice: under load the model sees full batches
instead of one text at a time. Limits on body size, batch size and text length turn bad input into clear 413/422
answers before it reaches the model.
"""

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from seqtune import __version__
from seqtune.errors import SeqtuneError
from seqtune.extras import require
from seqtune.microbatch import MicroBatcher

log = logging.getLogger("seqtune.serve")
SHAPE = '{"text": "..." or ["...", ...], "text_pair": the same shape, for pair models only}'


@dataclass
class ServeSettings:
    """How the server batches and what it accepts."""

    batching: bool = True
    """Collect concurrent requests into one forward pass; off runs each request on its own, one at a time."""
    micro_batch: int = 32
    """Most texts in one collected forward pass."""
    max_wait_ms: float = 5.0
    """How long the first waiting request waits for others to join its batch."""
    max_batch_size: int = 64
    """Most texts in one request (more: 422)."""
    max_text_chars: int = 10_000
    """Longest text, in characters (longer: 422). Texts are truncated to the model's max length anyway."""
    max_body_bytes: int = 1_000_000
    """Largest request body (larger: 413)."""


class RequestError(SeqtuneError):
    """A request the server refuses: an HTTP status and a one-line message."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


def check_texts(
    text: str | list[str], text_pair: str | list[str] | None, pair_model: bool, settings: ServeSettings
) -> tuple[list[str], list[str] | None]:
    """Validate one request's texts against the model and the limits; (texts, pairs) or a `RequestError` (422)."""
    if (text_pair is not None) and isinstance(text, str) != isinstance(text_pair, str):
        raise RequestError(422, "text and text_pair must have the same shape: both strings, or both lists")
    texts = [text] if isinstance(text, str) else list(text)
    pairs = None if text_pair is None else [text_pair] if isinstance(text_pair, str) else list(text_pair)
    if pair_model and pairs is None:
        raise RequestError(422, "this model was trained on text pairs: send text_pair as well")
    if not pair_model and pairs is not None:
        raise RequestError(422, "this model takes a single text, not a pair: drop text_pair")
    if not texts:
        raise RequestError(422, "text is an empty list; send at least one text")
    if len(texts) > settings.max_batch_size:
        raise RequestError(
            422, f"batch of {len(texts)} texts is over the limit of {settings.max_batch_size}; split the request"
        )
    if pairs is not None and len(pairs) != len(texts):
        raise RequestError(422, f"got {len(texts)} texts but {len(pairs)} text pairs; send one pair per text")
    for name, values in (("text", texts), ("text_pair", pairs or [])):
        for i, value in enumerate(values):
            where = name if isinstance(text, str) else f"{name}[{i}]"
            if len(value) > settings.max_text_chars:
                raise RequestError(
                    422, f"{where} has {len(value)} characters, over the limit of {settings.max_text_chars}; shorten it"
                )
            if not value.strip():
                raise RequestError(422, f"{where} is empty; every input needs some text")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise RequestError(422, f"{where} is not valid Unicode (a lone surrogate); send UTF-8 text") from None
    return texts, pairs


DRAIN_LIMIT = 256 * 1024 * 1024  # an oversized body is read and discarded up to this size, then the connection closes


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 before the app (or json.loads) sees it."""

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._drain(receive)
            return await self._refuse(send, f"request body is {int(declared)} bytes")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                if message.get("more_body"):
                    await self._drain(receive)
                return await self._refuse(send, "request body is larger")
            if not message.get("more_body"):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    @staticmethod
    async def _drain(receive: Callable) -> None:
        """Read and discard what the client is still sending (up to `DRAIN_LIMIT` bytes) before answering: a server
        that answers and closes while the client is still writing makes most clients (urllib, requests, httpx)
        see a reset connection instead of the 413."""
        drained = 0
        while drained <= DRAIN_LIMIT:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body"):
                return

    async def _refuse(self, send: Callable, found: str) -> None:
        detail = f"{found}, over the limit of {self.max_bytes} bytes; send fewer or shorter texts per request"
        payload = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers + [(b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


def _validation_message(errors: Sequence[dict]) -> str:
    """FastAPI's list of validation errors -> one line that says what was expected."""
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return f"malformed JSON ({first.get('ctx', {}).get('error', 'decode error')}); expected {SHAPE}"
    parts = [f"{'.'.join(str(x) for x in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}" for e in errors[:4]]
    return f"invalid request ({'; '.join(parts)}); expected {SHAPE}"


def _schemas() -> tuple[type, type, type]:
    """The request, response and error bodies (pydantic comes with the serve extra, so built on first use)."""
    from pydantic import BaseModel, ConfigDict, Field

    class PredictRequest(BaseModel):
        model_config = ConfigDict(
            extra="forbid",
            json_schema_extra={"examples": [{"text": "A cat sat.", "text_pair": "A cat was sitting."}]},
        )
        text: str | list[str] = Field(description="One text, or a batch of texts.")
        text_pair: str | list[str] | None = Field(
            None, description="Pair models only: the second text(s), in the same shape as text."
        )

    class Prediction(BaseModel):
        label: str | None = Field(None, description="Single-label: the predicted label.")
        labels: list[str] | None = Field(None, description="Multi-label: the labels with probability > 0.5.")
        score: float | None = Field(None, description="Probability of the label, or the regression score.")
        probabilities: dict[str, float] | None = Field(None, description="Probability of every label.")

    class PredictResponse(BaseModel):
        predictions: list[Prediction] = Field(description="One per input text (pair), in request order.")

    class ErrorResponse(BaseModel):
        detail: str = Field(description="What was wrong, and what was expected.")

    return PredictRequest, PredictResponse, ErrorResponse


def _model_info(run: Any, settings: ServeSettings) -> dict[str, Any]:
    from seqtune.runtime import EXPORT_INFO, is_onnx_folder

    onnx = is_onnx_folder(run.run_dir)
    export = json.loads((run.run_dir / EXPORT_INFO).read_text()) if (run.run_dir / EXPORT_INFO).is_file() else {}
    return {
        "task": run.task.name,
        "problem_type": run.task.problem_type,
        "inputs": list(run.task.text_columns),
        "pair": run.task.is_pair,
        "labels": list(run.task.label_names or ()),
        "model": run.cfg.model.name,
        "backend": "onnxruntime" if onnx else "torch",
        "quantize": export.get("quantize"),
        "max_length": run.max_length,
        "settings": asdict(settings),
    }


def create_app(run: str | Path | Any, settings: ServeSettings | None = None) -> Any:
    """The FastAPI app for a run folder (or an exported ONNX folder, or a loaded run).

    Example:
        >>> app = create_app("runs/mrpc")  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
    """
    fastapi = require("fastapi", "serve")
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from seqtune.demo_page import demo_page, docs_page
    from seqtune.predict import predict
    from seqtune.runtime import LoadedRun, load_run

    settings = settings or ServeSettings()
    loaded = run if isinstance(run, LoadedRun) else load_run(run)
    PredictRequest, PredictResponse, ErrorResponse = _schemas()  # noqa: N806 - classes

    def run_batch(items: list[tuple[str, str | None]]) -> list[dict]:
        pairs = [p for _, p in items] if loaded.task.is_pair else None
        return predict(loaded, [t for t, _ in items], pairs, batch_size=max(settings.micro_batch, len(items)))

    batcher = MicroBatcher(
        run_batch,
        settings.micro_batch,
        settings.max_wait_ms,
        enabled=settings.batching,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        await batcher.close()

    app = fastapi.FastAPI(
        title="seqtune",
        version=__version__,
        lifespan=lifespan,
        description=f"Predictions from {loaded.run_dir.name}: {loaded.task.name} ({loaded.task.problem_type}).",
        docs_url=None,  # Swagger UI loads from a CDN; GET /docs points at /openapi.json instead (seqtune.demo_page)
        redoc_url=None,
    )
    app.state.info, app.state.batcher = _model_info(loaded, settings), batcher
    errors = {
        413: {"model": ErrorResponse, "description": "Body too large"},
        422: {"model": ErrorResponse, "description": "Invalid request"},
    }

    @app.post("/predict", response_model=PredictResponse, response_model_exclude_none=True, responses=errors)
    async def predict_endpoint(body: PredictRequest) -> dict:  # type: ignore[valid-type]
        """Labels and probabilities (scores for regression, label sets for multi-label) for one text, a pair,
        or a batch of either."""
        try:
            texts, pairs = check_texts(body.text, body.text_pair, loaded.task.is_pair, settings)
        except RequestError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=exc.status)
        return {"predictions": await batcher.submit(list(zip(texts, pairs or [None] * len(texts), strict=True)))}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        """A page to try the model in a browser (self-contained: no CDN)."""
        return demo_page(loaded.run_dir.name)

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs() -> str:
        return docs_page(loaded.run_dir.name)

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness: the model is loaded and the server answers."""
        return {"status": "ok"}

    @app.get("/info")
    async def info() -> dict[str, Any]:
        """Task, labels, model, backend, max length and the server's limits."""
        return app.state.info

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Any, exc: RequestValidationError) -> Any:
        return JSONResponse({"detail": _validation_message(exc.errors())}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Any, exc: StarletteHTTPException) -> Any:
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            # FastAPI's answer when json.loads itself fails (e.g. RecursionError on deeply nested arrays)
            return JSONResponse({"detail": f"malformed JSON (could not be parsed); expected {SHAPE}"}, status_code=422)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def crashed(request: Any, exc: Exception) -> Any:
        log.exception("prediction failed")
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


def serve(
    run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, settings: ServeSettings | None = None
) -> None:
    """Load the run and serve it with uvicorn until interrupted."""
    uvicorn = require("uvicorn", "serve")
    app = create_app(run_dir, settings)
    info = app.state.info
    print(f"serving {run_dir} ({info['task']}, {info['backend']}) on http://{host}:{port} (docs at /docs)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
