"""`rfm serve`: one warm model behind a local JSON API for desktop apps in any language (the `serve` extra).

Like Ollama or llama.cpp's server: loopback by default, one process keeps the artifact loaded and
serves every app of the person at the keyboard. Every endpoint but /v1/health needs the bearer
token that `rfm serve` creates on first start (owner-only file in the user data dir), as Jupyter
does. Bad input is a 4xx JSON error `{"error": {"code", "message"}}`; nothing else ever reaches a
client (no stack traces). Requests run in a pool of MAX_IN_FLIGHT threads: onnxruntime sessions are
thread-safe and the user store locks across threads and processes. A request that takes longer than
the timeout gets 504 at once; its work finishes in the background and holds its in-flight slot
until then (a session call cannot be interrupted), so the service never runs more than the limit.
"""

from __future__ import annotations

import hmac
import json
import math
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rfm import __version__
from rfm.errors import RfmError, UsageError
from rfm.fileio import atomic_open
from rfm.paths import user_data_dir
from rfm.runtime.model import MAX_CANDIDATES, RewardModel

API = "v1"
MAX_BODY_BYTES = 2 << 20
MAX_SERVICE_CANDIDATES = 256  # per request; the library allows more, a desktop reranker needs far fewer
# Requests past this many in flight get 503 "busy" at once: on a CPU-bound machine a longer queue only
# makes every interactive caller wait (16 queued reranks of 8 x 256 already wait ~5 s on 2 cores).
MAX_IN_FLIGHT = 16
REQUEST_TIMEOUT_S = 30.0
MAX_TEXT_CHARS = 100_000  # per prompt or candidate; tokens past max_length (256) are cut anyway


def token_file(root: Path | None = None) -> Path:
    return (root or user_data_dir()) / "serve-token"


def load_or_create_token(path: Path) -> str:
    """The service's bearer token: read it, or create a random one (owner-only) on first start."""
    if path.is_file():
        token = path.read_text(encoding="utf-8").strip()
        if len(token) >= 32:
            return token
    token = secrets.token_urlsafe(32)
    with atomic_open(path, private=True) as handle:
        handle.write(token + "\n")
    return token


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _text(body: dict, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise ApiError(400, "bad_field", f"'{key}' must be a string")
    if len(value) > MAX_TEXT_CHARS:
        raise ApiError(413, "text_too_long", f"'{key}' is over {MAX_TEXT_CHARS} characters")
    return value


def _candidates(body: dict) -> list[str]:
    value = body.get("candidates")
    if not isinstance(value, list) or not value or not all(isinstance(c, str) for c in value):
        raise ApiError(400, "bad_field", "'candidates' must be a non-empty list of strings")
    if len(value) > MAX_SERVICE_CANDIDATES:
        raise ApiError(413, "too_many_candidates", f"at most {MAX_SERVICE_CANDIDATES} candidates per request")
    if any(len(c) > MAX_TEXT_CHARS for c in value):
        raise ApiError(413, "text_too_long", f"a candidate is over {MAX_TEXT_CHARS} characters")
    return value


async def _read_capped(request, limit: int) -> bytes:
    """The body, refused as soon as it is known to pass `limit` (never read whole into memory first)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body_too_large", f"request body over {limit} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise ApiError(413, "body_too_large", f"request body over {limit} bytes")
    return bytes(raw)


def _no_constants(value: str) -> float:
    raise ValueError(f"{value} is not a number JSON allows")


def create_app(model: RewardModel, token: str | None, max_body: int = MAX_BODY_BYTES,
               max_in_flight: int = MAX_IN_FLIGHT, timeout: float = REQUEST_TIMEOUT_S):
    """The Starlette app serving `model`; `token` None means no auth (tests, trusted sandboxes)."""
    import asyncio
    import threading
    from concurrent.futures import ThreadPoolExecutor

    slots = threading.BoundedSemaphore(max_in_flight)
    workers = ThreadPoolExecutor(max_in_flight + 2, thread_name_prefix="rfm-serve")
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def finished(work: asyncio.Future) -> None:
        # The slot is freed when the work ends, not when a timed-out caller stops waiting for it.
        slots.release()
        if not work.cancelled():
            work.exception()  # retrieved, so a timed-out request's failure is not logged as unhandled

    def handler(fn: Callable[[dict, dict], Any], method: str, public: bool = False):
        async def endpoint(request: Request) -> JSONResponse:
            try:
                if not public and token is not None:
                    given = request.headers.get("authorization", "")
                    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                        raise ApiError(401, "unauthorized", "missing or wrong bearer token (see `rfm serve --help`)")
                body: dict = {}
                if method == "POST":
                    raw = await _read_capped(request, max_body)
                    try:
                        body = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
                    except (UnicodeDecodeError, ValueError, RecursionError):
                        raise ApiError(400, "bad_json", "the body must be one JSON object (UTF-8)") from None
                    if not isinstance(body, dict):
                        raise ApiError(400, "bad_json", "the body must be one JSON object")
                if public:
                    return JSONResponse(await run_in_threadpool(fn, body, dict(request.path_params)))
                if not slots.acquire(blocking=False):
                    return JSONResponse({"error": {"code": "busy", "message": f"{max_in_flight} requests in "
                                                   "flight; retry shortly"}}, status_code=503,
                                        headers={"Retry-After": "1"})
                try:
                    work = asyncio.get_running_loop().run_in_executor(workers, fn, body, dict(request.path_params))
                except BaseException:
                    slots.release()
                    raise
                work.add_done_callback(finished)
                try:
                    return JSONResponse(await asyncio.wait_for(asyncio.shield(work), timeout))
                except asyncio.TimeoutError:
                    raise ApiError(504, "timeout", f"no answer within {timeout:g} s (the machine is busy or "
                                   "the request is too large)") from None
            except ApiError as exc:
                return JSONResponse({"error": {"code": exc.code, "message": exc.message}}, status_code=exc.status)
            except UsageError as exc:
                return JSONResponse({"error": {"code": "bad_request", "message": str(exc)}}, status_code=400)
            except RfmError as exc:
                return JSONResponse({"error": {"code": "failed", "message": str(exc)}}, status_code=500)
            except Exception:  # never a stack trace to a client
                return JSONResponse({"error": {"code": "internal", "message": "internal error"}}, status_code=500)

        return endpoint

    def rerank(body: dict, _: dict) -> dict:
        top_k = body.get("top_k")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ApiError(400, "bad_field", "'top_k' must be a positive integer")
        user, prompt, candidates = _text(body, "user"), _text(body, "prompt"), _candidates(body)
        ranked = model.rerank(user, prompt, candidates, top_k=top_k)
        return {"user": user, "candidates": [{"index": r.index, "score": r.score, "text": r.text} for r in ranked]}

    def score(body: dict, _: dict) -> dict:
        scores = model.score(_text(body, "user"), _text(body, "prompt"), _candidates(body))
        if not all(math.isfinite(s) for s in scores):
            raise ApiError(500, "failed", "non-finite score")
        return {"scores": [float(s) for s in scores]}

    def feedback(body: dict, _: dict) -> dict:
        user = _text(body, "user")
        w = model.feedback(user, _text(body, "prompt"), _text(body, "chosen"), _text(body, "rejected"))
        record = model.store.read(user)
        return {"user": user, "choices": record.feedback_total, "weights_norm": float((w @ w) ** 0.5)}

    def next_question(body: dict, _: dict) -> dict:
        i, j = model.next_question(_text(body, "user"), _text(body, "prompt"), _candidates(body))
        return {"pair": [i, j]}

    def user_summary(_: dict, params: dict) -> dict:
        record = model.record(params["user"])
        if record is None:
            raise ApiError(404, "unknown_user", f"no stored data for {params['user']!r}")
        return {"user": record.user_id, "choices": record.feedback_total, "stored": len(record.deltas),
                "prior": record.prior, "weights": record.w.tolist(), "updated": record.updated}

    def user_delete(_: dict, params: dict) -> dict:
        return {"user": params["user"], "deleted": model.store.delete(params["user"])}

    def user_export(_: dict, params: dict) -> dict:
        record = model.store.read(params["user"])
        if record is None:
            raise ApiError(404, "unknown_user", f"no stored data for {params['user']!r}")
        return record.to_json()

    def model_info(_: dict, __: dict) -> dict:
        m = model.artifact.manifest
        return {"rfm_version": __version__, "fingerprint": m.fingerprint, "features": m.features,
                "max_length": m.max_length, "kind": m.kind, "adaptive": m.adaptive,
                "device": model.extractor.device, "precision": model.extractor.precision,
                "max_candidates": min(MAX_SERVICE_CANDIDATES, MAX_CANDIDATES), "max_body_bytes": max_body,
                "max_text_chars": MAX_TEXT_CHARS, "max_in_flight": max_in_flight, "timeout_s": timeout,
                "coalescing": model.extractor.coalescing}

    def health(_: dict, __: dict) -> dict:
        return {"status": "ok", "api": API}

    def openapi(_: dict, __: dict) -> dict:
        return OPENAPI

    routes = [
        Route(f"/{API}/health", handler(health, "GET", public=True), methods=["GET"]),
        Route("/openapi.json", handler(openapi, "GET", public=True), methods=["GET"]),
        Route(f"/{API}/model", handler(model_info, "GET"), methods=["GET"]),
        Route(f"/{API}/rerank", handler(rerank, "POST"), methods=["POST"]),
        Route(f"/{API}/score", handler(score, "POST"), methods=["POST"]),
        Route(f"/{API}/feedback", handler(feedback, "POST"), methods=["POST"]),
        Route(f"/{API}/next-question", handler(next_question, "POST"), methods=["POST"]),
        Route(f"/{API}/users/{{user}}", handler(user_summary, "GET"), methods=["GET"]),
        Route(f"/{API}/users/{{user}}", handler(user_delete, "DELETE"), methods=["DELETE"]),
        Route(f"/{API}/users/{{user}}/export", handler(user_export, "GET"), methods=["GET"]),
    ]
    return Starlette(routes=routes)


def _op(summary: str, body: dict | None = None) -> dict:
    op: dict = {"summary": summary, "responses": {"200": {"description": "OK"},
                                                  "4XX": {"description": "bad input: {error: {code, message}}"}}}
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": [k for k, v in body.items() if not v.get("optional")],
            "properties": {k: {kk: vv for kk, vv in v.items() if kk != "optional"} for k, v in body.items()}}}}}
    return op


_S, _LIST = {"type": "string"}, {"type": "array", "items": {"type": "string"}}
OPENAPI = {
    "openapi": "3.0.3",
    "info": {"title": "rfm local reranking service", "version": API},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "security": [{"bearer": []}],
    "paths": {
        f"/{API}/health": {"get": {**_op("Liveness (no token needed)"), "security": []}},
        f"/{API}/model": {"get": _op("The loaded artifact: fingerprint, d, device, precision, limits")},
        f"/{API}/rerank": {"post": _op("Candidates best-first under the user's reward", {
            "user": _S, "prompt": _S, "candidates": _LIST, "top_k": {"type": "integer", "optional": True}})},
        f"/{API}/score": {"post": _op("Rewards of candidates, in input order",
                                      {"user": _S, "prompt": _S, "candidates": _LIST})},
        f"/{API}/feedback": {"post": _op("Record one choice and refit the user's weights on the device",
                                         {"user": _S, "prompt": _S, "chosen": _S, "rejected": _S})},
        f"/{API}/next-question": {"post": _op("The pair of candidates whose answer teaches the most",
                                              {"user": _S, "prompt": _S, "candidates": _LIST})},
        f"/{API}/users/{{user}}": {"get": _op("A user's summary and weights"),
                                   "delete": _op("Delete everything stored for the user")},
        f"/{API}/users/{{user}}/export": {"get": _op("The user's file (as `rfm users export`)")},
    },
}


def serve(artifact: str | os.PathLike, host: str = "127.0.0.1", port: int = 8765, auth: bool = True,
          store: str | None = None, device: str = "auto", precision: str = "auto", threads: int | None = None,
          token_path: Path | None = None, announce: Callable[[str], None] = print, coalesce: str = "auto",
          timeout: float = REQUEST_TIMEOUT_S) -> None:
    """Load the artifact once and serve it until interrupted. `coalesce`: merge concurrent requests' batches
    into one session call; auto = off, since it was measured to gain nothing on a CPU and to lose
    throughput on an H100 (benchmarks/results/serve.md, gpu_latency.md)."""
    import uvicorn

    if coalesce not in ("auto", "on", "off"):
        raise UsageError(f"must be auto, on or off, got {coalesce!r}", param="coalesce")
    model = RewardModel.load(artifact, device=device, precision=precision, threads=threads, store=store)
    if coalesce == "on":
        model.extractor.coalesce()
    token = load_or_create_token(token_path or token_file()) if auth else None
    mode = f"{model.extractor.device}, {model.extractor.precision}" + (", coalescing" if model.extractor.coalescing else "")
    access = f"token in {token_path or token_file()}" if auth else \
        "NO AUTH: any local program can read and change users' data"
    announce(f"serving {artifact} on http://{host}:{port}/{API} ({mode}); {access}")
    uvicorn.run(create_app(model, token, timeout=timeout), host=host, port=port, log_level="warning",
                access_log=False, timeout_keep_alive=5)
