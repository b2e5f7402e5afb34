"""The vocable server: OpenAI-compatible transcription, WebSocket streaming and a browser page.

    vocable serve --port 8000
    client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    client.audio.transcriptions.create(model="whisper-1", file=open("a.wav", "rb"))

Endpoints (see docs/server.md):
    GET  /                          the page: record from the microphone, upload a file, download SRT/VTT
    GET  /health                    liveness and load
    GET  /v1/models                 the models a request may name
    POST /v1/audio/transcriptions   multipart, as OpenAI defines it
    WS   /v1/audio/stream           16-bit PCM in (or a declared format), JSON partial/final events out

Uploads are parsed in memory and never written to disk. Errors are JSON in OpenAI's shape:
{"error": {"message", "type", "param", "code"}}.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import re
import socket
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import anyio
import numpy as np
from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.websockets import WebSocketDisconnect

from .. import __version__
from ..audio import MAX_RATE, MIN_RATE, SAMPLE_RATE, UNKNOWN_LENGTH, load_audio
from ..decoding import MAX_PROMPT_CHARS, DecodingOptions
from ..errors import ConfigError, ModelError, VocableError, collected_warnings
from ..files import parse_json
from ..formats import format_result
from ..stream import FORMATS as STREAM_FORMATS
from ..stream import Streamer, StreamOptions

STATIC_DIR = Path(__file__).parent / "static"
MB = 1024 * 1024
FORM_OVERHEAD = 64 * 1024  # bytes of multipart headers and small fields allowed on top of the file
RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("word", "segment")
MAX_WS_MESSAGE = 1 * MB  # largest WebSocket message accepted (~32 s of 16 kHz int16)
WS_FRAME_LIMIT = 4 * MAX_WS_MESSAGE  # larger frames are cut off by uvicorn (close 1009), smaller get a JSON error
MAX_BACKLOG = 64 * MB  # audio a stream has received and not yet decoded (~35 min of 16 kHz int16); past it, TCP waits
LANGUAGES = {"en": "english", "english": "english"}  # what an English model (English normaliser) accepts
LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}|[A-Za-z]{4,20}")  # "es", "pt-BR" or "spanish"


@dataclass
class ServerOptions:
    model: str = "default"  # the model used when a request names none (or one the server does not have)
    api_key: str | None = None  # when set, requests need "Authorization: Bearer KEY" (WebSocket: ?api_key=)
    max_upload_mb: float = 25.0  # OpenAI's own upload limit
    max_audio_seconds: float = 1800.0  # longest upload, in seconds of audio
    max_streams: int = 4  # concurrent WebSocket streams
    max_stream_seconds: float = 3600.0  # a stream is closed after this much audio
    stream_idle_seconds: float = 30.0  # a stream that sends nothing for this long is closed (frees its slot)
    max_models: int = 2  # loaded models kept in memory
    workers: int = 2  # inference calls running at once (the rest wait)
    threads: int = 1  # CPU threads per inference call, torch and onnxruntime alike (0 = the engine's default)
    stream: StreamOptions | None = None  # None: each model's own (stream.default_options)
    decoding: DecodingOptions | None = None  # for the server's own model (an LM, hotwords); None: its defaults

    def validate(self) -> None:
        limits = [("max_upload_mb", 0.001, 4096), ("max_audio_seconds", 1, 6 * 3600), ("max_streams", 1, 1024),
                  ("max_stream_seconds", 1, 24 * 3600), ("stream_idle_seconds", 1, 3600), ("max_models", 1, 64),
                  ("workers", 1, 256), ("threads", 0, 256)]
        for name, low, high in limits:
            value = getattr(self, name)
            if not low <= value <= high:  # also refuses nan
                raise ConfigError(f"--{name.replace('_', '-')} ({name}): expected {low:g} to {high:g}, got {value}")


class ApiError(Exception):
    """An error answered as JSON in OpenAI's shape."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param

    def body(self) -> dict:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


class ModelCache:
    """Loaded recognizers by name, the least recently used dropped beyond `size`.

    A request may name the server's model or a bundled one, never a path; any other name (such as
    "whisper-1" from an OpenAI client) means the server's model.
    """

    def __init__(self, default: str, size: int = 2, threads: int = 0):
        if str(default).lower().endswith(".onnx"):  # an exported model: runs without torch, served alone
            self.default_path, self.allowed = Path(default), {}
            if not self.default_path.is_file():
                raise ModelError(f"{default}: no such ONNX model file")
        else:
            from ..bundled import bundled_models, resolve_model_path
            self.default_path = resolve_model_path(default)  # fails now, not on the first request
            self.allowed = {name: name for name in bundled_models()}
        self.default = _served_name(self.default_path, self.allowed)
        self.allowed[self.default] = str(self.default_path)
        self.size, self.threads = max(1, size), threads
        self._models: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()  # guards _models and _loading, held only briefly
        self._loading: dict[str, threading.Lock] = {}  # one per name: a model is loaded once, however many ask

    def names(self) -> list[str]:
        return [self.default] + sorted(n for n in self.allowed if n != self.default)

    def resolve(self, requested: str | None) -> str:
        return requested if requested in self.allowed else self.default

    def get(self, name: str):
        """The Recognizer for `name` (loading it on first use; blocking). A request for a loaded model
        never waits for another model's load."""
        from ..transcribe import load
        with self._lock:
            if name in self._models:
                return self._used(name)
            loading = self._loading.setdefault(name, threading.Lock())
        with loading:
            with self._lock:
                if name in self._models:  # loaded by the request this one waited for
                    return self._used(name)
            recognizer = load(self.allowed[name], threads=self.threads)
            with self._lock:
                self._models[name] = recognizer
                while len(self._models) > self.size:
                    self._models.popitem(last=False)
                return recognizer

    def _used(self, name: str):
        self._models.move_to_end(name)  # the least recently used model is the first to go
        return self._models[name]


def _served_name(path: Path, bundled: dict) -> str:
    """The name a model is served under: the one it was trained or bundled with (meta "name"), else its
    file's; every trained model is `model.vocable`. Never a bundled model's name unless it is that file
    (a copy of fsdd-digits.vocable elsewhere is served as "fsdd-digits-file")."""
    try:
        if path.suffix.lower() == ".onnx":
            from ..runtime import read_onnx_metadata
            meta = read_onnx_metadata(path).get("meta") or {}
        else:
            from ..modelfile import read_model_blob
            meta = read_model_blob(path).get("meta") or {}
    except VocableError:  # loading it says what is wrong, at start
        meta = {}
    name = meta.get("name") if isinstance(meta, dict) else None
    name = name.strip() if isinstance(name, str) else ""
    for candidate in (name, path.stem):
        if candidate and "/" not in candidate and not _shadows_bundled(candidate, path, bundled):
            return candidate
    return path.stem + "-file"


def _shadows_bundled(name: str, path: Path, bundled: dict) -> bool:
    if name not in bundled:
        return False
    from ..bundled import resolve_model_path
    return resolve_model_path(name).resolve() != path.resolve()


def create_app(options: ServerOptions | None = None) -> FastAPI:
    options = options or ServerOptions()
    options.validate()
    # No /docs: FastAPI's page loads Swagger UI from a CDN, blank on an offline machine; /openapi.json stays
    app = FastAPI(title="vocable", version=__version__, docs_url=None, redoc_url=None)
    app.state.options = options
    app.state.models = ModelCache(options.model, options.max_models, options.threads)
    app.state.limiter = anyio.CapacityLimiter(max(1, options.workers))
    app.state.streams = 0
    _add_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.head("/health", include_in_schema=False)  # one route for both made /openapi.json warn of a duplicate id
    @app.get("/health")
    async def health():
        return {"status": "ok", "version": __version__, "model": app.state.models.default,
                "streams": app.state.streams, "max_streams": options.max_streams,
                "auth": options.api_key is not None}

    @app.get("/v1/models")
    async def models(request: Request):
        _check_key(options, request.headers.get("authorization"), None)
        return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "vocable"}
                                           for n in app.state.models.names()]}

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request):
        _check_key(options, request.headers.get("authorization"), None)
        form = await _read_form(request, options.max_upload_mb)
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ApiError(400, "file: a multipart file field named 'file' is required", "missing_file", "file")
            if len(form.getlist("file")) > 1:  # transcribing one and dropping the rest would lose them unsaid
                raise ApiError(400, f"file: one file per request, got {len(form.getlist('file'))}", "invalid_value",
                               "file")
            data = await upload.read()
            if len(data) > options.max_upload_mb * MB:  # the body's limit allows for the form around the file
                raise _too_large(options.max_upload_mb)
            query = _TranscriptionRequest.from_form(form)
        finally:
            await form.close()
        if not data:
            raise ApiError(400, f"file: {upload.filename or 'the upload'} is empty (0 bytes)", "empty_file", "file")
        name = app.state.models.resolve(query.model)
        recognizer = await anyio.to_thread.run_sync(app.state.models.get, name, limiter=app.state.limiter)
        language = _language(recognizer, query.language)
        result, notes = await anyio.to_thread.run_sync(_transcribe, recognizer, data, upload.filename or "upload",
                                                       options.max_audio_seconds, _decoding(app, name), query.prompt,
                                                       limiter=app.state.limiter)
        return _with_warnings(_format(result, query, language, notes), notes)

    @app.get("/v1/audio/stream", include_in_schema=False)
    async def stream_over_http():
        raise ApiError(426, "/v1/audio/stream is a WebSocket: connect with ws:// (Upgrade: websocket)",
                       "upgrade_required")

    @app.websocket("/v1/audio/stream")
    async def stream(websocket: WebSocket):
        try:
            _check_key(options, websocket.headers.get("authorization"), websocket.query_params.get("api_key"))
        except ApiError as e:
            return await _refuse(websocket, e)
        if app.state.streams >= options.max_streams:
            return await _refuse(websocket, ApiError(
                429, f"too many streams: {options.max_streams} are open; retry later", "too_many_streams"))
        app.state.streams += 1
        try:
            await _run_stream(app, websocket)
        finally:
            app.state.streams -= 1

    return app


@dataclass
class _TranscriptionRequest:
    model: str | None
    response_format: str
    granularities: list[str]
    language: str | None
    prompt: str | None

    @classmethod
    def from_form(cls, form) -> "_TranscriptionRequest":
        for key, value in form.multi_items():  # a file where text belongs crashed float() and str() alike
            if key != "file" and not isinstance(value, str):
                raise ApiError(400, f"{key}: expected text, got a file", "invalid_value", key)
        response_format = str(form.get("response_format") or "json")
        if response_format not in RESPONSE_FORMATS:
            raise ApiError(400, f"response_format: expected one of {', '.join(RESPONSE_FORMATS)}, "
                                f"got {response_format!r}", "invalid_value", "response_format")
        granularities = [str(g) for g in form.getlist("timestamp_granularities[]")
                         + form.getlist("timestamp_granularities")]
        for g in granularities:
            if g not in GRANULARITIES:
                raise ApiError(400, f"timestamp_granularities[]: expected word or segment, got {g!r}",
                               "invalid_value", "timestamp_granularities")
        if granularities and response_format != "verbose_json":
            raise ApiError(400, "timestamp_granularities[]: needs response_format=verbose_json",
                           "invalid_value", "timestamp_granularities")
        language = str(form.get("language") or "").strip().lower() or None  # checked against the model
        stream = str(form.get("stream") or "false").lower()
        if stream not in ("false", "true"):
            raise ApiError(400, f"stream: expected true or false, got {form.get('stream')!r}", "invalid_value",
                           "stream")
        if stream == "true":
            raise ApiError(400, "stream: streaming uploads are not supported; use the WebSocket "
                                "/v1/audio/stream for live results", "unsupported_value", "stream")
        temperature = form.get("temperature")  # accepted for compatibility (greedy/beam decoding has none)
        if temperature is not None and not _is_number_between(temperature, 0.0, 1.0):
            raise ApiError(400, f"temperature: expected a number from 0 to 1, got {temperature!r}",
                           "invalid_value", "temperature")
        model = form.get("model")
        return cls(str(model) if model else None, response_format, granularities, language,
                   checked_prompt(form.get("prompt")))


def checked_prompt(prompt) -> str | None:
    """A request's prompt (a form field, or a key of a stream's start message): text of at most MAX_PROMPT_CHARS."""
    if prompt is None or prompt == "":
        return None
    if not isinstance(prompt, str):
        raise ApiError(400, f"prompt: expected text, got {type(prompt).__name__}", "invalid_value", "prompt")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ApiError(400, f"prompt: at most {MAX_PROMPT_CHARS} characters, got {len(prompt)}", "invalid_value",
                       "prompt")
    return prompt


def _is_number_between(text, low: float, high: float) -> bool:
    try:
        return low <= float(text) <= high  # False for nan
    except (TypeError, ValueError):
        return False


# -- requests ------------------------------------------------------------------------------------


class _InMemoryParser(MultiPartParser):
    spool_max_size = 1 << 62  # never roll an upload over to a temporary file: audio stays in memory


def _too_large(max_upload_mb: float) -> ApiError:
    return ApiError(413, f"file: the upload is larger than the server's limit of {max_upload_mb:g} MB",
                    "file_too_large", "file")


async def _read_form(request: Request, max_upload_mb: float):
    """Read the request body (refusing, as it arrives, more than the file limit and the form around it)
    and parse it in memory."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):  # media types are case-insensitive
        raise ApiError(415, f"Content-Type: expected multipart/form-data, got {content_type or 'none'!r}",
                       "unsupported_media_type")
    limit = max_upload_mb * MB + FORM_OVERHEAD
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(max_upload_mb)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(max_upload_mb)

    async def stream():
        yield bytes(body)

    try:
        return await _InMemoryParser(request.headers, stream(), max_files=4, max_fields=64).parse()
    except MultiPartException as e:
        raise ApiError(400, f"malformed multipart body: {e.message}", "invalid_multipart") from None


def _decoding(app: FastAPI, name: str) -> DecodingOptions | None:
    """The server's decoding options apply to its own model; a bundled model a request names keeps its own."""
    return app.state.options.decoding if name == app.state.models.default else None


def with_prompt(decoding: DecodingOptions | None, prompt: str | None) -> DecodingOptions | None:
    """The request's decoding: `decoding` (None: the model's own) with the request's prompt after the
    server's own `--prompt` (the words the LM lacks become hotwords, DecodingOptions.prompt); a phrase
    grammar's server ignores prompts."""
    base = decoding or DecodingOptions()
    if not prompt or base.phrases is not None:
        return decoding
    room = MAX_PROMPT_CHARS - (len(base.prompt) + 1 if base.prompt else 0)
    if len(prompt) > room:  # the client sent `prompt` only: say what the limit is for it
        raise ApiError(400, f"prompt: at most {room} characters on this server (its own prompt takes "
                       f"{MAX_PROMPT_CHARS - room} of {MAX_PROMPT_CHARS}), got {len(prompt)}", "invalid_value", "prompt")
    return replace(base, prompt=f"{base.prompt}\n{prompt}" if base.prompt else prompt)


def _transcribe(recognizer, data: bytes, filename: str, max_seconds: float, decoding: DecodingOptions | None,
                prompt: str | None = None):
    """Decode the uploaded bytes (never touching disk) and transcribe them; the Result and the warnings
    given on the way (a file cut short, samples beyond full scale). Runs in a worker thread."""
    with collected_warnings() as notes:
        return _transcribed(recognizer, data, filename, max_seconds, decoding, prompt), notes


def _with_warnings(response: Response, notes: list[str]) -> Response:
    """The warnings a client should see, for every format, in the Vocable-Warning header (latin-1, as
    headers must be); JSON bodies carry them too (_format)."""
    if notes:
        response.headers["Vocable-Warning"] = "; ".join(notes).encode("latin-1", "replace").decode("latin-1")
    return response


def _transcribed(recognizer, data: bytes, filename: str, max_seconds: float, decoding: DecodingOptions | None,
                 prompt: str | None):
    duration = _declared_duration(data)
    if duration is not None and duration > max_seconds:
        raise _too_long(filename, duration, max_seconds)
    try:
        samples = load_audio(data, name=filename)
    except VocableError as e:  # the message names the upload (load_audio's `name`)
        raise ApiError(400, f"file: {e}", "invalid_file_format", "file") from None
    if len(samples) / SAMPLE_RATE > max_seconds:
        raise _too_long(filename, len(samples) / SAMPLE_RATE, max_seconds)
    options = with_prompt(decoding, prompt)
    try:
        return recognizer.transcribe(samples, options=options)
    except VocableError as e:  # the user's input, whatever a check above missed: a 400, never a 500
        raise ApiError(400, f"file: {filename}: {e}", "invalid_request_error", "file") from None


def _declared_duration(data: bytes) -> float | None:
    """Duration from the file's header, when it has one, so that long audio is refused before decoding."""
    import soundfile as sf
    try:
        info = sf.info(io.BytesIO(data))
    except Exception:  # not audio, or a format without a header: load_audio will say
        return None
    return info.duration if 0 < info.frames < UNKNOWN_LENGTH else None  # else load_audio says why


def _too_long(filename: str, seconds: float, limit: float) -> ApiError:
    return ApiError(400, f"file: {filename} is {seconds:.0f} s long; the server's limit is {limit:g} s",
                    "audio_too_long", "file")


def _check_key(options: ServerOptions, authorization: str | None, query_key: str | None) -> None:
    if options.api_key is None:
        return
    given = query_key
    if authorization and authorization.lower().startswith("bearer "):
        given = authorization[7:].strip()
    if not given or not hmac.compare_digest(given.encode(), options.api_key.encode()):
        raise ApiError(401, "invalid API key: send 'Authorization: Bearer KEY' (WebSocket: ?api_key=KEY)",
                       "invalid_api_key")


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request, e: ApiError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, e: StarletteHTTPException):  # keeps headers such as a 405's Allow
        return JSONResponse(ApiError(e.status_code, str(e.detail)).body(), status_code=e.status_code,
                            headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, e: RequestValidationError):
        return JSONResponse(ApiError(400, f"invalid request: {e.errors()[:1]}").body(), status_code=400)


# -- responses -----------------------------------------------------------------------------------


def _language(recognizer, requested: str | None) -> str:
    """The language verbose_json names. An English model (English normaliser) refuses another language;
    for others vocable cannot tell, so the request's word (or the model's meta "language") is taken."""
    if recognizer.tokenizer.normalizer == "english":
        if requested and requested not in LANGUAGES:
            raise ApiError(400, f"language: {requested!r} is not supported; this model transcribes English (en)",
                           "unsupported_language", "language")
        return "english"
    if requested and not LANGUAGE_TAG.fullmatch(requested):  # echoed in the response: a code, not any text
        raise ApiError(400, f"language: expected a language code such as 'es' or 'pt-BR', got {requested[:40]!r}",
                       "invalid_language", "language")
    meta = getattr(getattr(recognizer, "loaded", None), "meta", None) or {}
    return requested or str(meta.get("language") or "unknown")


def _format(result, query: _TranscriptionRequest, language: str, notes: list[str]) -> Response:
    """The response in the requested format; JSON ones with a "warnings" list when there were any (a key
    OpenAI's clients ignore)."""
    warned = {"warnings": notes} if notes else {}
    if query.response_format == "text":
        return PlainTextResponse(result.text + "\n")
    if query.response_format == "srt":
        return PlainTextResponse(format_result(result, "srt"), media_type="application/x-subrip")
    if query.response_format == "vtt":
        return PlainTextResponse(format_result(result, "vtt"), media_type="text/vtt")
    if query.response_format == "json":
        return JSONResponse({"text": result.text, **warned})
    granularities = query.granularities or ["segment"]
    body = {"task": "transcribe", "language": language, "duration": round(result.duration, 3),
            "text": result.text}
    if "segment" in granularities:
        body["segments"] = [_verbose_segment(i, s) for i, s in enumerate(result.segments)]
    if "word" in granularities:
        body["words"] = [{"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)}
                         for w in result.words]
    return JSONResponse(body | warned)


def _verbose_segment(index: int, segment) -> dict:
    """A segment with the fields OpenAI's verbose_json has; those Whisper-specific are filled honestly."""
    confidences = [max(w.confidence, 1e-6) for w in segment.words]
    return {"id": index, "seek": 0, "start": round(segment.start, 3), "end": round(segment.end, 3),
            "text": segment.text, "tokens": [], "temperature": 0.0,
            "avg_logprob": round(float(np.mean(np.log(confidences))), 4) if confidences else 0.0,
            "compression_ratio": 1.0, "no_speech_prob": 0.0,
            "words": [{"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3),
                       "probability": round(w.confidence, 4)} for w in segment.words]}


# -- streaming -----------------------------------------------------------------------------------


async def _refuse(websocket: WebSocket, error: ApiError) -> None:
    """Refuse a WebSocket before accepting it: an HTTP error response where the server supports it."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse(error.body(), status_code=error.status))
        return
    await websocket.accept()
    await websocket.send_json(_error_event(error))
    await websocket.close(code=1008 if error.status == 401 else 1013)


async def _run_stream(app: FastAPI, websocket: WebSocket) -> None:
    """Protocol: optional first text message {"type": "start", "sample_rate", "format", "model"} (the
    query string may carry the same keys); then binary audio messages; then {"type": "end"}, answered by
    the last final event(s) and {"type": "done"}. The server first says {"type": "ready", "model",
    "sample_rate", "format", "engine"}. Events: {"type": "partial"|"final", "text", "start", "end", "words"};
    {"type": "warning", "message"} once per warning the stream gives (a prompt without an LM, audio
    beyond full scale); errors: {"type": "error", "code", "reason", "message"}, then the socket closes."""
    options: ServerOptions = app.state.options

    async def bounded(sending) -> None:
        # a client that stops reading would otherwise hold its stream slot for good (a send, or the close
        # frame, waits on its full socket): the idle timeout below only covers waiting for its messages
        with anyio.fail_after(options.stream_idle_seconds):
            await sending

    async def send(event: dict) -> None:
        await bounded(websocket.send_json(event))

    await websocket.accept()
    inbox, messages = anyio.create_memory_object_stream(float("inf"))
    backlog = [0]  # bytes of audio in `messages`

    async def receive_all() -> None:
        """Take each message as it arrives: uvicorn reads no further frames (the client's keepalive pings
        among them) until the app takes one, and a client sending faster than the decoder was dropped for
        a missed pong. Past MAX_BACKLOG the client waits on TCP instead."""
        try:
            while True:
                while backlog[0] > MAX_BACKLOG:
                    await anyio.sleep(0.05)
                message = await websocket.receive()
                backlog[0] += len(message.get("bytes") or b"")
                await inbox.send(message)
                if message["type"] == "websocket.disconnect":
                    return
        except (WebSocketDisconnect, RuntimeError):  # closed under it
            await inbox.send({"type": "websocket.disconnect"})

    with inbox, messages:  # closed at the end (anyio warns of memory streams left open)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(receive_all)
            try:
                await _serve_stream(app, websocket, messages, backlog, bounded, send)
            finally:
                tasks.cancel_scope.cancel()


async def _serve_stream(app: FastAPI, websocket: WebSocket, messages, backlog: list, bounded, send) -> None:
    """_run_stream's protocol over the messages its receiver takes in."""
    options: ServerOptions = app.state.options
    config = dict(websocket.query_params)
    streamer, warned = None, set()

    async def send_all(events, notes) -> None:
        for note in notes:  # each once a stream: a kept decoder repeats its warnings at every final
            if note not in warned:
                warned.add(note)
                await send({"type": "warning", "message": note})
        for event in events:
            await send(event.to_dict())

    try:
        while True:
            with anyio.move_on_after(options.stream_idle_seconds) as idle:
                message = await messages.receive()
                backlog[0] -= len(message.get("bytes") or b"")
            if idle.cancelled_caught:
                raise ApiError(408, f"no message for {options.stream_idle_seconds:g} s; closing the stream",
                               "idle_timeout")
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                request = _parse_control(message["text"])
                if request.get("type") == "start":
                    if streamer is not None:
                        raise ApiError(400, "start: send it once, before any audio", "start_again")
                    config.update({k: v for k, v in request.items() if k != "type"})
                    streamer, notes = await _open_stream(app, config)
                    await send(_ready(app, streamer, config))
                    await send_all([], notes)
                    continue
                if request.get("type") == "end":
                    if streamer is None:
                        _stream_settings(config)  # a bad ?sample_rate= is an error even with no audio sent
                    else:
                        await send_all(*await _in_thread(app, streamer.flush))
                    await send({"type": "done", "audio_seconds": round(streamer.received / SAMPLE_RATE if streamer else 0.0, 3)})
                    await bounded(websocket.close())
                    return
                raise ApiError(400, f"unknown message type {request.get('type')!r}; expected start or end")
            if len(message.get("bytes") or b"") > MAX_WS_MESSAGE:  # uvicorn closes (1009) only beyond WS_FRAME_LIMIT
                raise ApiError(413, f"audio messages must be at most {MAX_WS_MESSAGE // MB} MB; send smaller chunks",
                               "message_too_large")
            if streamer is None:
                streamer, notes = await _open_stream(app, config)
                await send(_ready(app, streamer, config))
                await send_all([], notes)
            await send_all(*await _in_thread(app, streamer.accept, message.get("bytes") or b""))
            if streamer.time > options.max_stream_seconds:
                raise ApiError(400, f"stream longer than the server's limit of {options.max_stream_seconds:g} s",
                               "audio_too_long")
    except ApiError as e:
        try:
            if streamer is not None:  # the audio before the error was fine: the utterance under way is final
                await send_all(*await _final_events(app, streamer))
            await send(_error_event(e))
            await bounded(websocket.close(code=1008))
        except (WebSocketDisconnect, TimeoutError):
            return
    except (WebSocketDisconnect, TimeoutError):  # gone, or not reading what it is sent
        return


async def _final_events(app: FastAPI, streamer: Streamer) -> tuple[list, list[str]]:
    """The streamer's last final(s) and warnings, or none when flushing fails too (the error is sent
    either way)."""
    try:
        return await _in_thread(app, streamer.flush)
    except ApiError:
        return [], []


def _error_event(error: ApiError) -> dict:
    """A stream's error: `code` the HTTP status it would have had, `reason` a word a program can act on."""
    return {"type": "error", "code": error.status, "reason": error.code or "invalid_request", "message": error.message}


def _parse_control(text: str) -> dict:
    try:
        request = parse_json(text)
    except ValueError:
        raise ApiError(400, "text messages must be JSON objects such as {\"type\": \"end\"}") from None
    if not isinstance(request, dict):
        raise ApiError(400, "text messages must be JSON objects such as {\"type\": \"end\"}")
    return request


async def _open_stream(app: FastAPI, config: dict) -> tuple[Streamer, list[str]]:
    """The stream's Streamer, and the warnings making it gave (its decoder's)."""
    rate, fmt, prompt = _stream_settings(config)
    name = app.state.models.resolve(config.get("model"))
    recognizer = await anyio.to_thread.run_sync(app.state.models.get, name, limiter=app.state.limiter)
    try:
        options = app.state.options.stream
        with collected_warnings() as notes:
            return Streamer(recognizer, rate, fmt, replace(options) if options is not None else None,
                            with_prompt(_decoding(app, name), prompt)), notes
    except VocableError as e:
        raise ApiError(400, str(e)) from None


def _stream_settings(config: dict) -> tuple[int, str, str | None]:
    """(sample rate, format, prompt) of a stream's query and start message, each checked."""
    rate = config.get("sample_rate", SAMPLE_RATE)  # an int from JSON, a string from the query
    if isinstance(rate, float) and rate.is_integer():
        rate = int(rate)
    if (isinstance(rate, bool) or not (str(rate).isascii() and str(rate).isdigit())  # not true (1 Hz), 8000.5,
            or not MIN_RATE <= int(rate) <= MAX_RATE):  # Infinity, "fast" or "²" (a digit to isdigit, not to int)
        raise ApiError(400, f"sample_rate: expected a whole number of Hz from {MIN_RATE} to {MAX_RATE}, got {rate!r}")
    fmt = str(config.get("format", "s16le"))
    if fmt not in STREAM_FORMATS:
        raise ApiError(415, f"format: expected one of {', '.join(STREAM_FORMATS)}, got {fmt!r}", "unsupported_format")
    if not isinstance(config.get("model", ""), str):
        raise ApiError(400, f"model: expected a model name, got {config['model']!r}")
    return int(rate), fmt, checked_prompt(config.get("prompt"))


def _ready(app: FastAPI, streamer: Streamer, config: dict) -> dict:
    return {"type": "ready", "model": app.state.models.resolve(config.get("model")),
            "sample_rate": streamer.sample_rate, "format": streamer.input_format, "engine": streamer.engine_kind}


async def _in_thread(app: FastAPI, fn, *args) -> tuple[list, list[str]]:
    """fn(*args)'s events, run in a worker thread, and the warnings it gave."""
    def collecting():
        with collected_warnings() as notes:
            return fn(*args), notes
    try:
        return await anyio.to_thread.run_sync(collecting, limiter=app.state.limiter)
    except VocableError as e:
        raise ApiError(400, str(e)) from None


def serve(options: ServerOptions, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Run the server until interrupted (blocking)."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port: expected 0 to 65535, got {port}")
    sock = listening_socket(host, port)  # first: a busy port is one line at once, not uvicorn's log after the load
    with contextlib.closing(sock):  # also when the model fails to load: serve() may be one call of a program
        app = create_app(options)
        # load now: a broken model, LM or decoding option fails at start, not per request
        app.state.models.get(app.state.models.default).decoder(options.decoding if options else None)
        serve_on(sock, app, host, log_level)


def serve_on(sock: socket.socket, app, host: str, log_level: str) -> None:
    """uvicorn serving `app` on the bound socket `sock` until interrupted."""
    import uvicorn
    # No ping timeout: a client sending faster than real time waits on TCP (backpressure), and its pong
    # queues behind its audio; the stream's idle timeout (stream_idle_seconds) still drops dead clients.
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, ws_max_size=WS_FRAME_LIMIT,
                            ws_ping_timeout=None)
    where = host if ":" not in host else f"[{host}]"
    print(f"vocable: serving on http://{where}:{port} (the page at /, Ctrl+C to stop)",
          file=sys.stderr, flush=True)  # uvicorn says where only when it binds the socket itself
    uvicorn.Server(config).run(sockets=[sock])


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port, for uvicorn to serve on; ConfigError when it cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restarts reuse the port
    try:
        sock.bind((host, port))
    except (OSError, UnicodeError, TypeError) as e:  # TypeError: a name IDNA cannot encode
        sock.close()
        why = getattr(e, "strerror", None) or e
        raise ConfigError(f"--host {host} --port {port}: cannot listen there ({why})") from None
    return sock


__all__ = ["ServerOptions", "ApiError", "ModelCache", "create_app", "serve"]
