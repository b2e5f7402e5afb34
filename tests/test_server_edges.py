"""Server behaviour a client relies on that tests/test_server.py left unpinned (found by mutating
vocable/server/app.py): auth header forms, error types, media types, verbose_json's granularities,
warning headers, the WebSocket protocol's edges (ready, query settings, limits, close codes) and the
model cache's eviction. Reuses test_server's module server (its own instance here, on a free port)."""

import asyncio
import contextlib
import json
import socket
from urllib.parse import urlsplit

import httpx
import numpy as np

from tests.test_server import (  # noqa: F401  (pytest fixtures are found by name in this module)
    API_KEY,
    MAX_AUDIO_SECONDS,
    MAX_UPLOAD_MB,
    base_url,
    digits,
    model,
    one_digit,
    stream_url,
    wav_bytes,
    websockets_sync,
)
from vocable.audio import MAX_RATE, MIN_RATE, SAMPLE_RATE
from vocable.decoding import MAX_PROMPT_CHARS
from vocable.server import ServerOptions, create_app
from vocable.server.app import MAX_WS_MESSAGE, ApiError, ModelCache

from websockets.exceptions import ConnectionClosed  # noqa: E402  (after test_server's importorskip)

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def transcriptions(base_url: str) -> str:
    return base_url + "/v1/audio/transcriptions"


def cut_wav(model) -> bytes:
    """A 16 kHz WAV of one digit whose end is cut off: transcribed, with a warning."""
    from tests.conftest import FSDD_FIXTURES
    from vocable.audio import load_audio
    data = wav_bytes(load_audio(FSDD_FIXTURES / "7_jackson_0.flac"))
    return data[: len(data) * 2 // 3]


def events_until_close(ws, timeout: float = 10) -> tuple[list[dict], int | None]:
    """Every event until the server closes the socket, and its close code."""
    events = []
    try:
        while True:
            events.append(json.loads(ws.recv(timeout=timeout)))
    except ConnectionClosed as e:
        return events, (e.rcvd.code if e.rcvd is not None else None)


# -- HTTP -----------------------------------------------------------------------------------------


def test_the_bearer_scheme_is_case_insensitive(base_url):
    """RFC 7235: the auth scheme is case-insensitive; `bearer KEY` and `BEARER KEY` are the key."""
    for scheme in ("bearer", "BEARER", "Bearer"):
        reply = httpx.get(base_url + "/v1/models", headers={"Authorization": f"{scheme} {API_KEY}"})
        assert reply.status_code == 200, scheme


def test_a_websocket_client_may_send_its_key_as_a_header(base_url):
    """Clients that can set headers (docs: 'Authorization: Bearer KEY' for every /v1 request) need no ?api_key=."""
    url = base_url.replace("http", "ws") + "/v1/audio/stream"
    with websockets_sync.connect(url, additional_headers=AUTH) as ws:
        ws.send(json.dumps({"type": "start"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"


def test_client_errors_are_typed_invalid_request_error(base_url, model):
    """OpenAI's clients branch on error.type: a 4xx is the client's mistake, never a server_error."""
    data, _ = one_digit(model)
    url = transcriptions(base_url)
    replies = {
        401: httpx.post(url, files={"file": ("a.flac", data)}, headers={"Authorization": "Bearer wrong"}),
        413: httpx.post(url, files={"file": ("big.wav", b"\x00" * int(MAX_UPLOAD_MB * 1024 * 1024 * 1.2))},
                        headers=AUTH),
        415: httpx.post(url, content=data, headers={**AUTH, "Content-Type": "audio/flac"}),
        400: httpx.post(url, files={"file": ("a.flac", data)}, data={"response_format": "docx"}, headers=AUTH),
    }
    for status, reply in replies.items():
        assert reply.status_code == status
        assert reply.json()["error"]["type"] == "invalid_request_error", status
    assert ApiError(503, "busy").body()["error"]["type"] == "server_error"


def test_each_text_format_has_its_media_type(base_url, model):
    data, expected = one_digit(model)
    types = {"text": "text/plain", "srt": "application/x-subrip", "vtt": "text/vtt", "json": "application/json",
             "verbose_json": "application/json"}
    for response_format, media_type in types.items():
        reply = httpx.post(transcriptions(base_url), files={"file": ("a.flac", data)},
                           data={"response_format": response_format}, headers=AUTH)
        assert reply.status_code == 200
        assert reply.headers["content-type"].split(";")[0] == media_type, response_format


def test_word_granularity_alone_gives_words_and_no_segments(base_url, model):
    data, expected = one_digit(model)
    reply = httpx.post(transcriptions(base_url), files={"file": ("a.flac", data)},
                       data={"response_format": "verbose_json", "timestamp_granularities[]": "word"}, headers=AUTH)
    body = reply.json()
    assert reply.status_code == 200 and "segments" not in body
    assert [w["word"] for w in body["words"]] == expected.split()


def test_a_warning_of_building_the_decoder_reaches_every_client_not_only_the_first(base_url, model):
    """Decoders are kept per options: the prompt warning (fsdd-digits has no LM) was given to the first
    request only, and a second identical one got none."""
    data, _ = one_digit(model)
    for _ in range(2):
        reply = httpx.post(transcriptions(base_url), files={"file": ("a.flac", data)},
                           data={"prompt": "zorbex quintal"}, headers=AUTH)
        assert reply.status_code == 200
        assert "prompt: this decoding has no LM" in reply.headers.get("vocable-warning", "")
        assert any(w.startswith("prompt: this decoding has no LM") for w in reply.json()["warnings"])


def test_a_warning_naming_a_non_latin1_file_reaches_the_client(base_url, model):
    """Headers are latin-1: a warning that names '録音.wav' must still be sent (replaced there), not a 500;
    the JSON body keeps the name as it was."""
    reply = httpx.post(transcriptions(base_url), files={"file": ("録音.wav", cut_wav(model))}, headers=AUTH)
    assert reply.status_code == 200
    assert "the file is cut short" in reply.headers["vocable-warning"]
    assert reply.json()["warnings"][0].startswith("録音.wav: the file is cut short")


def test_audio_of_exactly_the_length_limit_is_transcribed(base_url):
    """The limit is on audio *longer* than --max-audio-seconds."""
    exact = wav_bytes(np.zeros(int(MAX_AUDIO_SECONDS * 8000), np.float32), rate=8000)
    reply = httpx.post(transcriptions(base_url), files={"file": ("exact.wav", exact)}, headers=AUTH, timeout=60)
    assert reply.status_code == 200, reply.text


def test_a_prompt_of_exactly_the_limit_is_accepted(base_url, model):
    data, expected = one_digit(model)
    prompt = "x" * MAX_PROMPT_CHARS
    reply = httpx.post(transcriptions(base_url), files={"file": ("a.flac", data)}, data={"prompt": prompt},
                       headers=AUTH, timeout=60)
    assert reply.status_code == 200 and reply.json()["text"] == expected
    with websockets_sync.connect(stream_url(base_url)) as ws:
        ws.send(json.dumps({"type": "start", "prompt": prompt}))
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"


def test_a_declared_oversize_body_is_refused_before_it_is_sent(base_url):
    """Content-Length over the limit: 413 at once, without waiting for (or reading) the body."""
    host, port = urlsplit(base_url).hostname, urlsplit(base_url).port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall((f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {host}\r\n"
                      f"Authorization: Bearer {API_KEY}\r\n"
                      "Content-Type: multipart/form-data; boundary=xyz\r\n"
                      f"Content-Length: {100 * 1024 * 1024}\r\n\r\n").encode() + b"--xyz\r\n")
        reply = b""
        with contextlib.suppress(TimeoutError, socket.timeout):
            while b"\r\n\r\n" not in reply:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]


def test_a_chunked_body_over_the_limit_is_refused_while_it_arrives(base_url):
    """No Content-Length (chunked): the body is counted as it comes, so a large field gets the same 413."""
    body = (b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF\r\n'
            b'--xyz\r\nContent-Disposition: form-data; name="notes"\r\n\r\n'
            + b"n" * int(MAX_UPLOAD_MB * 1024 * 1024 * 1.5) + b"\r\n--xyz--\r\n")

    def chunks():
        for i in range(0, len(body), 64 * 1024):
            yield body[i: i + 64 * 1024]

    reply = httpx.post(transcriptions(base_url), content=chunks(), timeout=30,
                       headers={**AUTH, "Content-Type": "multipart/form-data; boundary=xyz"})
    assert reply.status_code == 413 and reply.json()["error"]["code"] == "file_too_large"


# -- WebSocket ------------------------------------------------------------------------------------


def test_ready_names_the_model_the_stream_asked_for(base_url):
    default = httpx.get(base_url + "/health").json()["model"]
    other = next(m["id"] for m in httpx.get(base_url + "/v1/models", headers=AUTH).json()["data"] if m["id"] != default)
    for asked, named in ((other, other), ("whisper-1", default)):
        with websockets_sync.connect(stream_url(base_url)) as ws:
            ws.send(json.dumps({"type": "start", "model": asked}))
            ready = json.loads(ws.recv(timeout=60))
        assert ready["type"] == "ready" and ready["model"] == named, asked


def test_the_query_string_may_declare_rate_and_format(base_url, digits):
    """?sample_rate=8000&format=f32le with no start message: the first audio message starts the stream so."""
    from vocable.audio import load_audio
    _, audio, words, _ = digits
    audio_8k = load_audio(audio, sample_rate=8000)
    with websockets_sync.connect(stream_url(base_url, sample_rate=8000, format="f32le")) as ws:
        for i in range(0, len(audio_8k), 800):
            ws.send(audio_8k[i: i + 800].astype("<f4").tobytes())
        ws.send(json.dumps({"type": "end"}))
        events = [json.loads(m) for m in ws]
    assert events[0] == {**events[0], "type": "ready", "sample_rate": 8000, "format": "f32le"}
    assert [e["text"] for e in events if e["type"] == "final"] == words and events[-1]["type"] == "done"


def test_the_start_message_overrides_the_query_string(base_url):
    with websockets_sync.connect(stream_url(base_url, sample_rate=8000)) as ws:
        ws.send(json.dumps({"type": "start", "sample_rate": 22050}))
        assert json.loads(ws.recv(timeout=10))["sample_rate"] == 22050


def test_the_sample_rate_limits_are_inclusive(base_url):
    for rate in (MIN_RATE, MAX_RATE):
        with websockets_sync.connect(stream_url(base_url)) as ws:
            ws.send(json.dumps({"type": "start", "sample_rate": rate}))
            ready = json.loads(ws.recv(timeout=10))
        assert ready["type"] == "ready" and ready["sample_rate"] == rate
    with websockets_sync.connect(stream_url(base_url)) as ws:
        ws.send(json.dumps({"type": "start", "sample_rate": MIN_RATE - 1}))
        assert json.loads(ws.recv(timeout=10))["code"] == 400


def test_a_message_of_exactly_the_size_limit_is_accepted(base_url):
    """Audio messages up to 1 MB are taken (docs: 'any size up to 1 MB')."""
    with websockets_sync.connect(stream_url(base_url)) as ws:
        ws.send(b"\x00" * MAX_WS_MESSAGE)
        ws.send(json.dumps({"type": "end"}))
        events, code = events_until_close(ws, timeout=60)
    assert [e["type"] for e in events if e["type"] in ("ready", "error", "done")] == ["ready", "done"], events[-1]
    assert events[-1]["audio_seconds"] == round(MAX_WS_MESSAGE / 2 / SAMPLE_RATE, 3) and code == 1000


def test_an_unknown_message_type_is_an_error_and_closes_with_1008(base_url):
    """A client's mistake is told (not ignored), then the socket closes with 1008 (policy violation):
    the page and clients tell a refused stream from a lost one by the code."""
    with websockets_sync.connect(stream_url(base_url)) as ws:
        ws.send(json.dumps({"type": "pause"}))
        events, code = events_until_close(ws)
    assert len(events) == 1 and events[0]["type"] == "error" and events[0]["code"] == 400
    assert events[0]["reason"] == "invalid_request" and "'pause'" in events[0]["message"]
    assert code == 1008
    with websockets_sync.connect(stream_url(base_url, format="mp3")) as ws:
        ws.send(b"\x00\x00")
        events, code = events_until_close(ws)
    assert events[-1]["reason"] == "unsupported_format" and code == 1008


def refused_over_plain_websocket(app, query: bytes) -> list[dict]:
    """What an ASGI server without the websocket.http.response extension gets when the app refuses."""
    sent = []

    async def scenario():
        messages = asyncio.Queue()
        await messages.put({"type": "websocket.connect"})

        async def send(message):
            sent.append(message)

        scope = {"type": "websocket", "path": "/v1/audio/stream", "raw_path": b"/v1/audio/stream", "headers": [],
                 "query_string": query, "scheme": "ws", "server": ("127.0.0.1", 1), "client": ("127.0.0.1", 2),
                 "subprotocols": [], "asgi": {"version": "3.0"}, "extensions": {}}
        await asyncio.wait_for(app(scope, messages.get, send), 30)

    asyncio.run(scenario())
    return sent


def test_a_refusal_without_http_denial_is_an_error_event_then_a_policy_close(model):
    """Without the denial extension: accept, the JSON error, then close 1008 for a bad key (do not retry),
    1013 (try again later) for a full server."""
    app = create_app(ServerOptions(model=model.loaded.path, api_key="k", max_streams=1))
    sent = refused_over_plain_websocket(app, b"api_key=wrong")
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert json.loads(sent[1]["text"])["code"] == 401 and sent[2]["code"] == 1008
    app.state.streams = 1
    sent = refused_over_plain_websocket(app, b"api_key=k")
    assert json.loads(sent[1]["text"])["reason"] == "too_many_streams" and sent[2]["code"] == 1013


# -- the model cache ------------------------------------------------------------------------------


def test_the_model_cache_keeps_the_most_recently_used_models(monkeypatch):
    """max_models loaded at most; the least recently *used* is dropped (not the first loaded, nor the newest)."""
    from vocable import transcribe
    loads = []
    monkeypatch.setattr(transcribe, "load", lambda path, threads=0: loads.append(str(path)) or f"model {path}")
    cache = ModelCache("default", size=2)
    a, b = cache.names()[:2]
    cache.allowed["c"] = "c"  # a third name (the fake load takes any path)
    for name in (a, b, a, "c"):  # a used again before c is loaded: b is the least recently used
        assert cache.get(name) == f"model {cache.allowed[name]}"
    assert len(cache._models) == 2
    cache.get(a)  # still loaded
    cache.get(b)  # dropped for c: loaded again
    assert loads == [cache.allowed[n] for n in (a, b, "c", b)]
    loads.clear()
    one = ModelCache("default", size=1)
    for name in (a, b, a):
        one.get(name)
    assert loads == [one.allowed[n] for n in (a, b, a)] and list(one._models) == [a]


def test_end_mid_utterance_gets_its_final_before_done(base_url, digits):
    """`end` while a digit is still being said: its final is sent, then done (docs, step 5)."""
    _, audio, words, spans = digits
    pcm = (audio[:int((spans[0][1] + 0.1) * SAMPLE_RATE)] * 32767).astype("<i2").tobytes()
    with websockets_sync.connect(stream_url(base_url)) as ws:
        ws.send(pcm)
        ws.send(json.dumps({"type": "end"}))
        events, code = events_until_close(ws)
    kinds = [e["type"] for e in events if e["type"] != "partial"]
    assert kinds == ["ready", "final", "done"] and code == 1000
    assert [e["text"] for e in events if e["type"] == "final"] == words[:1]


def test_a_stream_is_told_each_warning_once(base_url, digits):
    """A prompt for a model without an LM boosts nothing: the stream says so in one warning event, after
    ready, though the kept decoder warns again at every final."""
    _, audio, words, _ = digits
    with websockets_sync.connect(stream_url(base_url)) as ws:
        ws.send(json.dumps({"type": "start", "prompt": "zorbex quintal"}))
        ws.send((audio * 32767).astype("<i2").tobytes())
        ws.send(json.dumps({"type": "end"}))
        events, code = events_until_close(ws)
    kinds = [e["type"] for e in events if e["type"] != "partial"]
    assert kinds[:2] == ["ready", "warning"] and kinds.count("warning") == 1 and code == 1000
    assert events[1]["message"].startswith("prompt: this decoding has no LM")
    assert [e["text"] for e in events if e["type"] == "final"] == words
