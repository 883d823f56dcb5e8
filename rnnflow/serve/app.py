"""The web application of `rnnflow serve`: a Starlette app around one loaded run.

Routes (nothing else; in particular no file of the run folder is served, listed or written):

- ``GET /``: the page (``static/index.html``); ``GET /static/app.js``, ``/static/app.css``:
  its script and style, read from the package (no external assets: it works offline).
- ``GET /api/info``: what the run is (kind, classes or forms, model shape).
- ``POST /api/predict`` (image runs): a JSON object ``{"pixels": 28 rows of 28 ints in
  [0, 255], "top": 3}`` (a drawing, light on black) or the bytes of an image file with an
  ``image/*`` content type. Answers the fields of ``rnnflow predict --json`` plus the reading.
  Sequence runs: the bytes of a ``.csv`` or ``.npz`` series file (``SERIES_TYPES``); answers
  the fields of ``rnnflow predict RUN FILE --json`` plus each series' reading.
- ``POST /api/generate`` (poem runs): a JSON object with ``rnnflow generate``'s options.

Every refusal is a 4xx JSON ``{"error": message}``: a ``Host`` header not allowed (400), a
body over ``max_body_bytes`` (413), malformed or too deeply nested JSON (400), an unsupported
content type (415), an image that is not one (415) or is too large (413), a bad field (400:
an unknown one included); an unexpected failure is a 500 with the same shape, and the
server goes on. Inference runs in a worker thread, one request at a time per model.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from rnnflow.serve.runs import (
    MAX_PIXELS,
    MAX_SERIES,
    MAX_STEPS,
    ImageRun,
    PoemRun,
    RequestError,
    SequenceRun,
    check_fields,
)

__all__ = ["MAX_BODY_BYTES", "create_app"]

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 5 * 1024 * 1024
"""Default limit on a request body (an uploaded image or a JSON document): 5 MiB."""

_STATIC = {  # the only files served: name -> content type
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
SERIES_TYPES = (
    "text/csv",
    "text/plain",
    "application/octet-stream",
    "application/zip",
    "application/x-zip-compressed",
)
"""Content types /api/predict accepts for a sequence run (the bytes of a .csv or .npz file)."""
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=_HEADERS)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) more than ``limit`` bytes before reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise HTTPException(413, f"request body too large: {declared} bytes, the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"request body too large: over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise HTTPException(400, f"malformed JSON: {exc}") from exc
    except RecursionError as exc:  # json's parser recurses once per [ or {
        raise HTTPException(400, "malformed JSON: nested too deeply") from exc


def _top(value: object, *, query: bool) -> int:
    """``top``: a JSON integer >= 1, or (``query``) the ASCII digits of one in ``?top=``
    (``str.isdigit`` would also take '²' and '٣')."""
    top = value
    if query and isinstance(value, str) and value.isascii() and value.isdigit():
        try:
            top = int(value)
        except ValueError:  # over Python's 4300-digit limit: left a str, refused below
            pass
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise RequestError(f"top: expected a positive integer, got {value!r}")
    return top


class _TrustedHost(TrustedHostMiddleware):
    """Starlette's ``TrustedHostMiddleware`` (its Host parsing and matching), refusing with
    this API's JSON 400 ``{"error": ...}`` instead of the plain text "Invalid host header"."""

    _PASSED = "rnnflow.trusted_host"  # set in the request's scope once the host passed

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        super().__init__(self._passed, allowed_hosts=allowed_hosts, www_redirect=False)
        self.inner = app

    async def _passed(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[self._PASSED] = True
        await self.inner(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def app_only(message: Any) -> None:  # drops the plain-text refusal
            if scope.get(self._PASSED):
                await send(message)

        await super().__call__(scope, receive, app_only)
        if not scope.get(self._PASSED):
            host = Headers(scope=scope).get("host")
            refusal = _error(
                400,
                f"Host header {host!r} refused: this server answers to "
                f"{', '.join(self.allowed_hosts)} only (a defence against DNS rebinding)",
            )
            await refusal(scope, receive, send)


def create_app(
    run: ImageRun | PoemRun | SequenceRun,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_pixels: int = MAX_PIXELS,
    max_steps: int = MAX_STEPS,
    max_series: int = MAX_SERIES,
    allowed_hosts: list[str] | None = None,
) -> Starlette:
    """The app serving ``run`` (from :func:`rnnflow.serve.load_run`).

    ``max_pixels``: the largest uploaded image (pixels, from its header); ``max_steps``,
    ``max_series``: the longest series and the most series in one upload (sequence runs).
    ``allowed_hosts``: the ``Host`` headers accepted (a defence against DNS rebinding of a
    server on 127.0.0.1); default ``localhost``, ``127.0.0.1`` and ``[::1]`` (any port).
    """
    static = {
        name: resources.files("rnnflow.serve").joinpath("static", name).read_bytes()
        for name in _STATIC
    }

    async def page(request: Request) -> Response:
        return Response(static["index.html"], media_type=_STATIC["index.html"], headers=_HEADERS)

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC or name == "index.html":
            return _error(404, f"no such file: /static/{name}")
        return Response(static[name], media_type=_STATIC[name], headers=_HEADERS)

    async def info(request: Request) -> Response:
        answer = run.info()
        if isinstance(run, SequenceRun):  # this app's limits, which create_app may change
            answer["limits"] = {"steps": max_steps, "series": max_series}
        return JSONResponse(answer, headers=_HEADERS)

    async def predict(request: Request) -> Response:
        if isinstance(run, PoemRun):
            return _error(400, "this run is a character model: use POST /api/generate")
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await _read_body(request, max_body_bytes)
        if isinstance(run, SequenceRun):
            return await predict_series(kind, body, request.query_params.get("top", "3"))
        if kind == "application/json":
            data = _parse_json(body)
            if not isinstance(data, dict) or "pixels" not in data:
                return _error(400, 'expected a JSON object {"pixels": [[...28 ints] x 28]}')
            check_fields(data, {"pixels", "top"})
            top = _top(data.get("top", 3), query=False)
            image = run.image_from_pixels(data["pixels"])
            result = await run_in_threadpool(run.predict, image, source="canvas", top=top)
        elif kind.startswith("image/") or kind == "application/octet-stream":
            if not body:
                return _error(400, "empty upload: send the bytes of an image file")
            image = await run_in_threadpool(run.image_from_bytes, body, max_pixels=max_pixels)
            result = await run_in_threadpool(run.predict, image, source="upload")
        else:
            return _error(
                415,
                f"unsupported content type {kind or '(none)'!r}: send application/json "
                "(canvas pixels) or an image file (image/png, image/jpeg, ...)",
            )
        return JSONResponse(result, headers=_HEADERS)

    async def predict_series(kind: str, body: bytes, top: str) -> Response:
        if kind not in SERIES_TYPES:
            return _error(
                415,
                f"unsupported content type {kind or '(none)'!r}: this is a sequence run; send "
                f"the bytes of a .csv or .npz series file ({', '.join(SERIES_TYPES)})",
            )
        count = _top(top, query=True)
        if not body:
            return _error(400, "empty upload: send the bytes of a .csv or .npz series file")
        series = await run_in_threadpool(
            run.series_from_bytes, body, max_steps=max_steps, max_series=max_series
        )
        result = await run_in_threadpool(run.predict, series, top=count)
        return JSONResponse(result, headers=_HEADERS)

    async def generate(request: Request) -> Response:
        if not isinstance(run, PoemRun):
            what = "an image" if run.kind == "image" else f"a {run.kind}"
            return _error(400, f"this run is {what} classifier: use POST /api/predict")
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            return _error(415, f"unsupported content type {kind or '(none)'!r}: send JSON")
        data = _parse_json(await _read_body(request, max_body_bytes))
        result = await run_in_threadpool(run.generate, data)
        return JSONResponse(result, headers=_HEADERS)

    async def request_error(request: Request, exc: Exception) -> Response:
        return _error(getattr(exc, "status", 400), str(exc))  # a RequestError

    async def http_error(request: Request, exc: Exception) -> Response:
        return _error(getattr(exc, "status_code", 400), getattr(exc, "detail", str(exc)))

    async def server_error(request: Request, exc: Exception) -> Response:
        logger.exception("rnnflow serve: %s %s failed", request.method, request.url.path)
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")

    hosts = allowed_hosts or ["localhost", "127.0.0.1", "[::1]"]
    return Starlette(
        routes=[
            Route("/", page, methods=["GET"]),
            Route("/static/{name}", asset, methods=["GET"]),
            Route("/api/info", info, methods=["GET"]),
            Route("/api/predict", predict, methods=["POST"]),
            Route("/api/generate", generate, methods=["POST"]),
        ],
        middleware=[Middleware(_TrustedHost, allowed_hosts=hosts)],
        exception_handlers={
            RequestError: request_error,
            HTTPException: http_error,
            Exception: server_error,
        },
    )
