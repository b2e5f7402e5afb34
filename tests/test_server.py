"""The server against real clients: the official `openai` client, a WebSocket client, plain HTTP.

One uvicorn server runs on a free 127.0.0.1 port in a thread for the whole module; `vocable serve`
itself is started once as a subprocess.
"""

import contextlib
import io
import json
import os
import signal
import sys
import threading
import time

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.test_audio import flac_of_unknown_length
from tests.test_stream import DIGITS_MODEL, digit_stream
from vocable import Streamer, load
from vocable.audio import SAMPLE_RATE

openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")
websockets_sync = pytest.importorskip("websockets.sync.client")
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402

from vocable.server import ServerOptions, create_app  # noqa: E402
from vocable.server.app import MAX_WS_MESSAGE, WS_FRAME_LIMIT  # noqa: E402
from vocable.server.launch import free_port, launched_server  # noqa: E402

API_KEY = "test-key"
MAX_UPLOAD_MB = 2.0
MAX_AUDIO_SECONDS = 20.0
MAX_STREAMS = 2


@contextlib.contextmanager
def running_server(options: ServerOptions, port: int | None = None):
    """A real uvicorn server on 127.0.0.1 (on `port`, else a free one) in a thread; yields its base URL."""
    port = port or free_port()
    config = uvicorn.Config(create_app(options), host="127.0.0.1", port=port, log_level="warning",
                            ws_max_size=WS_FRAME_LIMIT)  # as `vocable serve` runs it
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def model():
    return load(DIGITS_MODEL)


@pytest.fixture(scope="module")
def base_url(model):
    options = ServerOptions(model=model.loaded.path, api_key=API_KEY, max_upload_mb=MAX_UPLOAD_MB,
                            max_audio_seconds=MAX_AUDIO_SECONDS, max_streams=MAX_STREAMS, stream_idle_seconds=2.0)
    with running_server(options) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url):
    return openai.OpenAI(base_url=base_url + "/v1", api_key=API_KEY, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def digits(model):
    """(wav bytes, digits, spans) of three digits separated by silence."""
    audio, words, spans = digit_stream(model)
    buffer = io.BytesIO()
    sf.write(buffer, audio, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue(), audio, words, spans


def wav_bytes(audio: np.ndarray, rate: int = SAMPLE_RATE, fmt: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format=fmt)
    return buffer.getvalue()


def one_digit(model):
    """(flac bytes, text) of a single fixture clip, at its original 8 kHz."""
    from tests.conftest import FSDD_FIXTURES
    path = FSDD_FIXTURES / "7_jackson_0.flac"
    return path.read_bytes(), model.transcribe(path).text


def test_openai_client_every_response_format(client, model):
    data, expected = one_digit(model)
    assert expected  # the model hears something in it
    json_result = client.audio.transcriptions.create(model="whisper-1", file=("seven.flac", data))
    assert json_result.text == expected
    text = client.audio.transcriptions.create(model="whisper-1", file=("seven.flac", data), response_format="text")
    assert text.strip() == expected
    srt = client.audio.transcriptions.create(model="whisper-1", file=("seven.flac", data), response_format="srt")
    lines = srt.strip().splitlines()
    assert lines[0] == "1" and " --> " in lines[1] and lines[2] == expected
    vtt = client.audio.transcriptions.create(model="whisper-1", file=("seven.flac", data), response_format="vtt")
    assert vtt.startswith("WEBVTT") and expected in vtt
    verbose = client.audio.transcriptions.create(model="whisper-1", file=("seven.flac", data),
                                                 response_format="verbose_json",
                                                 timestamp_granularities=["word", "segment"])
    duration = sf.info(io.BytesIO(data)).duration
    assert verbose.text == expected and abs(verbose.duration - duration) < 0.05
    assert [w.word for w in verbose.words] == expected.split()
    assert all(0 <= w.start < w.end <= duration + 0.05 for w in verbose.words)
    assert verbose.segments[0].text == expected


def test_subtitles_carry_the_segment_times(client, model):
    """SRT and VTT cues have the times verbose_json gives for the same audio, within the audio."""
    from tests.conftest import FSDD_FIXTURES
    from vocable.audio import load_audio
    clip = load_audio(FSDD_FIXTURES / "7_jackson_0.flac")
    audio = np.concatenate([np.zeros(SAMPLE_RATE, np.float32), clip, np.zeros(SAMPLE_RATE // 2, np.float32)])
    data = wav_bytes(audio)
    create = client.audio.transcriptions.create
    verbose = create(model="whisper-1", file=("late.wav", data), response_format="verbose_json",
                     timestamp_granularities=["word", "segment"])
    segment = verbose.segments[0]
    assert 0 <= segment.start < segment.end <= len(audio) / SAMPLE_RATE
    assert [w.word for w in verbose.words] == segment.text.split()

    def stamp(seconds, sep):
        ms = round(seconds * 1000)
        return f"00:00:{ms // 1000:02d}{sep}{ms % 1000:03d}"

    srt = create(model="whisper-1", file=("late.wav", data), response_format="srt").splitlines()
    assert srt[:3] == ["1", f"{stamp(segment.start, ',')} --> {stamp(segment.end, ',')}", segment.text]
    vtt = create(model="whisper-1", file=("late.wav", data), response_format="vtt").splitlines()
    assert vtt[:4] == ["WEBVTT", "", f"{stamp(segment.start, '.')} --> {stamp(segment.end, '.')}", segment.text]


def test_models_and_health(client, base_url, model):
    health = httpx.get(base_url + "/health").json()
    assert health["status"] == "ok" and health["auth"] is True
    ids = [m.id for m in client.models.list().data]
    assert ids[0] == health["model"]


def error_of(call):
    with pytest.raises(openai.APIStatusError) as info:
        call()
    body = info.value.response.json()
    assert body["error"]["message"], body
    return info.value.status_code, body["error"]


def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(client, base_url, model):
    create = client.audio.transcriptions.create
    status, error = error_of(lambda: create(model="whisper-1", file=("empty.wav", b"")))
    assert status == 400 and "empty" in error["message"]
    status, error = error_of(lambda: create(model="whisper-1", file=("notes.txt", b"just some text, not audio")))
    assert status == 400 and "notes.txt" in error["message"] and "audio" in error["message"]
    assert "BytesIO" not in error["message"]
    oversize = wav_bytes(np.zeros(int(MAX_UPLOAD_MB * 1024 * 1024) // 2 + 100_000, np.float32))  # 16-bit
    status, error = error_of(lambda: create(model="whisper-1", file=("big.wav", oversize)))
    assert status == 413 and "limit" in error["message"]
    just_over = wav_bytes(np.zeros(int(MAX_UPLOAD_MB * 1024 * 1024) // 2 + 1000, np.float32))  # the form fits
    status, error = error_of(lambda: create(model="whisper-1", file=("just-over.wav", just_over)))
    assert status == 413 and f"limit of {MAX_UPLOAD_MB:g} MB" in error["message"]
    too_long = wav_bytes(np.zeros(int((MAX_AUDIO_SECONDS + 5) * 8000), np.float32), rate=8000, fmt="FLAC")
    status, error = error_of(lambda: create(model="whisper-1", file=("long.flac", too_long)))
    assert status == 400 and error["code"] == "audio_too_long"
    status, error = error_of(lambda: create(model="whisper-1", file=("a.flac", one_digit(model)[0]),
                                            response_format="docx"))
    assert status == 400 and error["param"] == "response_format"
    status, error = error_of(lambda: create(model="whisper-1", file=("a.flac", one_digit(model)[0]), language="fr"))
    assert status == 400 and error["param"] == "language"
    wrong_key = openai.OpenAI(base_url=base_url + "/v1", api_key="wrong", max_retries=0)
    status, error = error_of(lambda: wrong_key.audio.transcriptions.create(model="whisper-1",
                                                                            file=("a.flac", b"x")))
    assert status == 401 and error["code"] == "invalid_api_key"
    reply = httpx.post(base_url + "/v1/audio/transcriptions", content=b"raw bytes",
                       headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "audio/wav"})
    assert reply.status_code == 415 and "multipart" in reply.json()["error"]["message"]
    reply = httpx.get(base_url + "/v1/nothing-here")
    assert reply.status_code == 404 and reply.json()["error"]["message"]
    auth = {"Authorization": f"Bearer {API_KEY}"}
    url = base_url + "/v1/audio/transcriptions"
    data, expected = one_digit(model)
    for temperature in ("nan", "-5", "hot"):
        reply = httpx.post(url, files={"file": ("a.flac", data)}, data={"temperature": temperature}, headers=auth)
        assert reply.status_code == 400 and reply.json()["error"]["param"] == "temperature", temperature
    for field in ("temperature", "prompt", "model"):  # a file where text belongs: a 400 naming it (was a 500)
        reply = httpx.post(url, files={"file": ("a.flac", data), field: ("b.flac", data)}, headers=auth)
        assert reply.status_code == 400 and reply.json()["error"] == {
            "message": f"{field}: expected text, got a file", "type": "invalid_request_error", "param": field,
            "code": "invalid_value"}, field
    for stream, code in (("maybe", "invalid_value"), ("true", "unsupported_value")):
        reply = httpx.post(url, files={"file": ("a.flac", data)}, data={"stream": stream}, headers=auth)
        assert reply.status_code == 400 and reply.json()["error"]["code"] == code, stream
    reply = httpx.post(url, files=[("file", ("a.flac", data)), ("file", ("b.flac", data))], headers=auth)
    assert reply.status_code == 400 and "one file per request, got 2" in reply.json()["error"]["message"]
    from vocable.audio import load_audio
    cut = wav_bytes(load_audio(io.BytesIO(data).read()))  # 16 kHz WAV of the digit, then its end cut off
    cut = cut[: len(cut) * 2 // 3]
    for response_format in ("json", "verbose_json", "text"):  # a warning reaches the client, not only the log
        reply = httpx.post(url, files={"file": ("cut.wav", cut)}, data={"response_format": response_format},
                           headers=auth)
        assert reply.status_code == 200 and "cut.wav: the file is cut short" in reply.headers["vocable-warning"], response_format
        if response_format != "text":
            assert reply.json()["warnings"] == [reply.headers["vocable-warning"]]
    reply = httpx.post(url, files={"file": ("a.flac", data)}, headers=auth)
    assert "vocable-warning" not in reply.headers and "warnings" not in reply.json()
    reply = httpx.post(url, files={"file": ("piped.flac", flac_of_unknown_length())}, headers=auth)
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "invalid_file_format"
    assert "piped.flac: the header does not say how long" in reply.json()["error"]["message"]
    for rate in (48000, 192000):  # a sample or two: under one at 16 kHz (was a 500, which clients retry)
        reply = httpx.post(url, files={"file": ("tiny.wav", wav_bytes(np.zeros(1, np.float32), rate))}, headers=auth)
        assert reply.status_code == 400 and "tiny.wav: audio is empty" in reply.json()["error"]["message"]
    assert httpx.get(base_url + "/docs").status_code == 404  # Swagger UI needs a CDN; the schema is served
    assert httpx.get(base_url + "/openapi.json").json()["info"]["title"] == "vocable"
    reply = httpx.post(base_url + "/health")
    assert reply.status_code == 405 and "GET" in reply.headers["allow"]
    assert httpx.head(base_url + "/health").status_code == 200
    reply = httpx.get(base_url + "/v1/audio/stream")
    assert reply.status_code == 426 and "WebSocket" in reply.json()["error"]["message"]
    # Media types are case-insensitive.
    request = httpx.Request("POST", url, files={"file": ("a.flac", data)}, data={"response_format": "text"},
                            headers=auth)
    request.headers["Content-Type"] = request.headers["Content-Type"].replace("multipart/form-data",
                                                                              "Multipart/Form-Data")
    with httpx.Client() as plain:
        reply = plain.send(request)
    assert reply.status_code == 200 and reply.text.strip() == expected
    # Still serving.
    data, expected = one_digit(model)
    assert client.audio.transcriptions.create(model="whisper-1", file=("a.flac", data)).text == expected


def stream_url(base_url: str, **query) -> str:
    query.setdefault("api_key", API_KEY)
    return base_url.replace("http", "ws") + "/v1/audio/stream?" + "&".join(f"{k}={v}" for k, v in query.items())


def stream_file(ws, audio: np.ndarray, chunk_seconds: float = 0.1) -> list[dict]:
    """Send 16 kHz audio as int16 PCM chunks, then "end"; return every event until "done"."""
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    step = int(chunk_seconds * SAMPLE_RATE) * 2
    for i in range(0, len(pcm), step):
        ws.send(pcm[i: i + step])
    ws.send(json.dumps({"type": "end"}))
    events = [json.loads(message) for message in ws]  # until the server closes
    assert events[-1]["type"] == "done"
    return events


def test_websocket_streams_partials_and_finals(base_url, digits):
    _, audio, words, spans = digits
    with websockets_sync.connect(stream_url(base_url)) as ws:
        events = stream_file(ws, audio)
    assert events[0]["type"] == "ready" and events[0]["sample_rate"] == SAMPLE_RATE
    assert events[-1]["audio_seconds"] == round(len(audio) / SAMPLE_RATE, 3)  # what was sent, not whole VAD frames
    finals = [e for e in events if e["type"] == "final"]
    assert [e["text"] for e in finals] == words
    assert any(e["type"] == "partial" for e in events)
    for event, (start, end) in zip(finals, spans):
        assert start - 0.35 <= event["words"][0]["start"] <= end


def test_a_client_sending_faster_than_decoding_keeps_its_keepalive(base_url, digits, model):
    """A client sending a long file at once, with websockets' keepalive on (its default): uvicorn read no
    further frames, pongs included, until the app took the next message, so the client closed the stream
    (1011, keepalive ping timeout) partway. Pings every 0.2 s, 0.5 s to answer each, 2 minutes of audio."""
    _, audio, words, _ = digits
    once = np.concatenate([audio, np.zeros(SAMPLE_RATE, np.float32)])  # a pause between repeats
    repeats = int(np.ceil(120 * SAMPLE_RATE / len(once)))
    pcm = (np.tile(once, repeats) * 32767).astype("<i2").tobytes()
    with websockets_sync.connect(stream_url(base_url), ping_interval=0.2, ping_timeout=0.5) as ws:
        for i in range(0, len(pcm), 3200):
            ws.send(pcm[i: i + 3200])
        ws.send(json.dumps({"type": "end"}))
        events = [json.loads(m) for m in ws]
    assert events[-1]["type"] == "done"
    library = Streamer(model, input_format="s16le")  # nothing lost or reordered: what the library itself gives
    finals = [e.text for i in range(0, len(pcm), 3200) for e in library.accept(pcm[i: i + 3200]) if e.type == "final"]
    finals += [e.text for e in library.flush() if e.type == "final"]
    assert [e["text"] for e in events if e["type"] == "final"] == finals and len(finals) > 2 * repeats


def test_websocket_declared_format_and_rate(base_url, digits, model):
    _, audio, words, _ = digits
    from vocable.audio import load_audio
    audio_8k = load_audio(audio, sample_rate=8000)
    with websockets_sync.connect(stream_url(base_url)) as ws:
        ws.send(json.dumps({"type": "start", "sample_rate": 8000, "format": "f32le"}))
        assert json.loads(ws.recv())["sample_rate"] == 8000
        for i in range(0, len(audio_8k), 800):
            ws.send(audio_8k[i: i + 800].astype("<f4").tobytes())
        ws.send(json.dumps({"type": "end"}))
        events = [json.loads(m) for m in ws]
    assert [e["text"] for e in events if e["type"] == "final"] == words


def test_websocket_limits_and_errors(base_url, digits):
    with pytest.raises(InvalidStatus) as info:
        websockets_sync.connect(stream_url(base_url, api_key="wrong"))
    assert info.value.response.status_code == 401
    assert json.loads(info.value.response.body)["error"]["code"] == "invalid_api_key"
    # MAX_STREAMS open streams: one more is refused with 429, and accepted again once one closes.
    with contextlib.ExitStack() as open_streams:
        for _ in range(MAX_STREAMS):
            open_streams.enter_context(websockets_sync.connect(stream_url(base_url)))
        with pytest.raises(InvalidStatus) as info:
            websockets_sync.connect(stream_url(base_url))
        assert info.value.response.status_code == 429
        assert "too many streams" in json.loads(info.value.response.body)["error"]["message"]
    deadline = time.monotonic() + 5
    while httpx.get(base_url + "/health").json()["streams"] and time.monotonic() < deadline:
        time.sleep(0.05)
    with websockets_sync.connect(stream_url(base_url, format="mp3")) as ws:
        ws.send(b"\x00\x00")
        event = json.loads(ws.recv())
        assert event["type"] == "error" and event["code"] == 415 and "format" in event["message"]
        assert event["reason"] == "unsupported_format"
    for text in ("not json", "[" * 100_000, '{"n": ' + "9" * 5000 + "}"):  # deeper or longer than Python reads
        with websockets_sync.connect(stream_url(base_url)) as ws:
            ws.send(text)
            event = json.loads(ws.recv())
            assert event["type"] == "error" and "JSON" in event["message"] and event["reason"] == "invalid_request"
    with websockets_sync.connect(stream_url(base_url, sample_rate="abc")) as ws:  # no audio: still checked
        ws.send(json.dumps({"type": "end"}))
        event = json.loads(ws.recv())
        assert event["type"] == "error" and event["message"].startswith("sample_rate: expected a whole number")
    for start, field in [({"sample_rate": float("inf")}, "sample_rate"), ({"sample_rate": True}, "sample_rate"),
                         ({"sample_rate": 8000.5}, "sample_rate"), ({"sample_rate": "\u00b2"}, "sample_rate"),
                         ({"sample_rate": 0}, "sample_rate: expected a whole number of Hz from"),
                         ({"model": ["x"]}, "model")]:
        with websockets_sync.connect(stream_url(base_url)) as ws:
            ws.send(json.dumps({"type": "start", **start}))  # json writes inf as Infinity, as JavaScript can't
            event = json.loads(ws.recv())
            assert event["type"] == "error" and event["code"] == 400 and event["message"].startswith(field), start
    with websockets_sync.connect(stream_url(base_url)) as ws:  # a silent client loses its slot
        event = json.loads(ws.recv(timeout=10))
        assert event == {"type": "error", "code": 408, "reason": "idle_timeout", "message": event["message"]}
    _, audio, words, spans = digits
    with websockets_sync.connect(stream_url(base_url)) as ws:  # silent mid-utterance: that utterance is final
        ws.send((audio[:int((spans[0][1] + 0.1) * SAMPLE_RATE)] * 32767).astype("<i2").tobytes())
        events = [json.loads(ws.recv(timeout=10)) for _ in range(2)]
        while events[-1]["type"] != "error":
            events.append(json.loads(ws.recv(timeout=10)))
    finals = [e["text"] for e in events if e["type"] == "final"]
    assert finals == words[:1] and events[-1]["reason"] == "idle_timeout"
    for mistake, reason in (("not json", "invalid_request"), (json.dumps({"type": "start"}), "start_again")):
        with websockets_sync.connect(stream_url(base_url)) as ws:  # a client's mistake mid-utterance: the same
            ws.send((audio[:int((spans[0][1] + 0.1) * SAMPLE_RATE)] * 32767).astype("<i2").tobytes())
            ws.send(mistake)
            events = [json.loads(ws.recv(timeout=10))]
            while events[-1]["type"] != "error":
                events.append(json.loads(ws.recv(timeout=10)))
        assert [e["text"] for e in events if e["type"] == "final"] == words[:1] and events[-1]["reason"] == reason
    with websockets_sync.connect(stream_url(base_url)) as ws:
        ws.send(b"\x00" * (MAX_WS_MESSAGE + 2))  # over the limit, under uvicorn's frame limit: a JSON error
        event = json.loads(ws.recv(timeout=10))
        assert (event["code"], event["reason"]) == (413, "message_too_large") and "1 MB" in event["message"]
    with websockets_sync.connect(stream_url(base_url)) as ws:
        ws.send(json.dumps({"type": "start"}))
        assert json.loads(ws.recv())["type"] == "ready"
        ws.send(json.dumps({"type": "start"}))
        event = json.loads(ws.recv())
        assert event["reason"] == "start_again" and "once" in event["message"]
    with websockets_sync.connect(stream_url(base_url)) as ws:  # still serving
        _, audio, words, _ = digits
        assert [e["text"] for e in stream_file(ws, audio) if e["type"] == "final"] == words


def test_a_client_that_stops_reading_loses_its_stream_slot(model):
    """The idle timeout covered only waiting for the client's messages: a client that sent audio and then
    read nothing left the server blocked in a send, its stream slot taken for good. Driven through the ASGI
    app with a send that never completes, as uvicorn's does while the peer's window is full."""
    import asyncio
    app = create_app(ServerOptions(model=model.loaded.path, stream_idle_seconds=1.0))

    async def scenario():
        messages = asyncio.Queue()
        for message in ({"type": "websocket.connect"}, {"type": "websocket.receive", "text": '{"type": "start"}'}):
            await messages.put(message)
        blocked = asyncio.Event()

        async def send(message):
            if message["type"] == "websocket.send":
                blocked.set()
                await asyncio.Event().wait()  # the client reads nothing more

        scope = {"type": "websocket", "path": "/v1/audio/stream", "raw_path": b"/v1/audio/stream", "headers": [],
                 "query_string": b"", "scheme": "ws", "server": ("127.0.0.1", 1), "client": ("127.0.0.1", 2),
                 "subprotocols": [], "asgi": {"version": "3.0"}, "extensions": {}}
        task = asyncio.create_task(app(scope, messages.get, send))
        await asyncio.wait_for(blocked.wait(), 30)
        assert app.state.streams == 1
        await asyncio.wait_for(task, 10)  # returns once the send has waited stream_idle_seconds
        return app.state.streams

    assert asyncio.run(scenario()) == 0


def test_server_decoding_options_apply_to_its_own_model_in_uploads_and_streams(model, digits):
    """`vocable serve --phrases/--lm/--hotwords`: the server's model decodes with them (a custom model's LM);
    a bundled model a request names keeps its own decoding."""
    from tests.conftest import FSDD_FIXTURES
    from vocable.decoding import DecodingOptions
    options = ServerOptions(model=model.loaded.path, decoding=DecodingOptions(phrases=["seven", "zero"]))
    with running_server(options) as url:
        def upload(name, **fields):
            files = {"file": (name, (FSDD_FIXTURES / name).read_bytes())}
            return httpx.post(url + "/v1/audio/transcriptions", files=files, data=fields, timeout=60).json()["text"]
        assert upload("7_theo_0.flac") == "seven"
        assert upload("4_theo_0.flac") == ""  # not in the grammar
        assert upload("4_theo_0.flac", model="en-default") == "four"
        _, audio, words, _ = digits
        with websockets_sync.connect(url.replace("http", "ws") + "/v1/audio/stream") as ws:
            finals = [e["text"] for e in stream_file(ws, audio) if e["type"] == "final"]
        assert finals == [w for w in words if w in ("seven", "zero")]  # the others are rejected: no final


def test_a_prompt_boosts_the_words_the_lm_lacks_in_uploads_and_streams(tmp_path):
    """OpenAI's `prompt` ("the spelling of names"): its words en-3gram lacks become hotwords for that request
    alone; a stream takes it in its start message. Too long or not text: a 400 naming the field."""
    from tests.test_runtime import espeak
    audio = espeak(tmp_path, "open the kellermann valve on the zorbex unit")
    names = "Parts list: Kellermann valves, the Zorbex unit."
    with running_server(ServerOptions(model="en-default")) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)

        def upload(**fields) -> str:
            return client.audio.transcriptions.create(model="whisper-1", file=("valve.wav", wav_bytes(audio)),
                                                      **fields).text
        plain = upload()
        assert "kellermann" not in plain and "zorbex" not in plain  # en-default alone misses both names
        assert upload(prompt=names) == "open the kellermann valve on the zorbex unit"
        assert upload() == plain  # the prompt was that request's alone
        with websockets_sync.connect(url.replace("http", "ws") + "/v1/audio/stream") as ws:
            ws.send(json.dumps({"type": "start", "prompt": names}))
            assert json.loads(ws.recv())["type"] == "ready"
            finals = [e["text"] for e in stream_file(ws, np.concatenate([audio, np.zeros(SAMPLE_RATE, np.float32)]))
                      if e["type"] == "final"]
        assert "kellermann" in " ".join(finals) and "zorbex" in " ".join(finals)
        for prompt, fragment in [("x" * 4001, "prompt: at most 4000 characters")]:
            with pytest.raises(openai.BadRequestError, match=fragment):
                upload(prompt=prompt)
        with websockets_sync.connect(url.replace("http", "ws") + "/v1/audio/stream") as ws:
            ws.send(json.dumps({"type": "start", "prompt": ["kellermann"]}))
            error = json.loads(ws.recv())
        assert error["type"] == "error" and error["message"] == "prompt: expected text, got list"
    from vocable.decoding import DecodingOptions
    with running_server(ServerOptions(model="en-default", decoding=DecodingOptions(prompt="Kellermann"))) as url:
        files = {"file": ("valve.wav", wav_bytes(audio))}
        reply = httpx.post(url + "/v1/audio/transcriptions", files=files, data={"prompt": "Zorbex"}, timeout=60)
        assert reply.json()["text"] == "open the kellermann valve on the zorbex unit"  # `serve --prompt`'s and the request's
        reply = httpx.post(url + "/v1/audio/transcriptions", files=files, data={"prompt": "x" * 3995}, timeout=60)
    assert reply.status_code == 400  # the limit left after the server's own prompt, not the joined length
    assert reply.json()["error"]["message"] == ("prompt: at most 3989 characters on this server (its own prompt "
                                                "takes 11 of 4000), got 3995")


def test_prompt_hotwords_are_the_words_the_lm_lacks():
    from vocable.decoding import DEFAULT_HOTWORD_BOOST, MAX_PROMPT_HOTWORDS, prompt_hotwords
    from vocable.lm import resolve_lm
    from vocable.transcribe import load
    tokenizer, lm = load("en-default").tokenizer, resolve_lm("en-3gram")
    words = prompt_hotwords("The Zorbex unit, the ZORBEX valve; Kellermann's sump", tokenizer, lm)
    assert words == [("zorbex", DEFAULT_HOTWORD_BOOST), ("kellermann's", DEFAULT_HOTWORD_BOOST),
                     ("sump", DEFAULT_HOTWORD_BOOST)]  # normalised, once each, only what en-3gram lacks
    assert prompt_hotwords("zorbex", tokenizer, None) == [] and prompt_hotwords("", tokenizer, lm) == []
    many = " ".join("zq" + "".join(chr(97 + int(d)) for d in str(i)) for i in range(2 * MAX_PROMPT_HOTWORDS))
    assert len(prompt_hotwords(many, tokenizer, lm)) == MAX_PROMPT_HOTWORDS


def test_uploads_are_not_written_to_disk(client, model, monkeypatch):
    """Starlette spools uploads over 1 MB to a temporary file by default; ours stay in memory."""
    import tempfile

    import starlette.formparsers
    rolled_over = []

    class Watching(tempfile.SpooledTemporaryFile):
        def rollover(self):
            rolled_over.append(self._max_size)
            super().rollover()

    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", Watching)
    big = wav_bytes(np.zeros(48000 * 15, np.float32), rate=48000)  # 1.4 MB, 15 s
    assert 1024 * 1024 < len(big) < MAX_UPLOAD_MB * 1024 * 1024
    client.audio.transcriptions.create(model="whisper-1", file=("quiet.wav", big))
    assert rolled_over == []
    # The check would notice: Starlette's stock parser rolls the same upload over to a file on disk.
    import anyio
    from starlette.datastructures import Headers
    body = (b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="q.wav"\r\n\r\n'
            + big + b"\r\n--xyz--\r\n")

    async def parse():
        async def stream():
            yield body
        form = await starlette.formparsers.MultiPartParser(
            Headers({"content-type": "multipart/form-data; boundary=xyz"}), stream()).parse()
        await form.close()

    anyio.run(parse)
    assert rolled_over


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """The digits model exported to ONNX (what the torch-free runtime install serves)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from tests.conftest import FSDD_FIXTURES
    from vocable.export import ExportOptions, export_model
    path = tmp_path_factory.mktemp("onnx") / "digits.onnx"
    export_model(model.loaded.path, path, ExportOptions(audio=sorted(FSDD_FIXTURES.glob("*.flac"))[:2]))
    return path


def test_server_threads_reach_every_engine(model, exported):
    """ServerOptions.threads caps the threads of ONNX models (onnxruntime) as well as torch ones."""
    import torch

    from vocable.server.app import ModelCache
    onnx_cache = ModelCache(str(exported), threads=1)
    session = onnx_cache.get(onnx_cache.default).engine.session
    assert session.get_session_options().intra_op_num_threads == 1
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        torch_cache = ModelCache(model.loaded.path, threads=1)
        torch_cache.get(torch_cache.default)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_model_being_loaded_holds_up_neither_loaded_models_nor_a_second_load(monkeypatch):
    """A request for a loaded model is answered while another model loads; two requests for a model that
    is loading load it once."""
    import threading
    import time

    from vocable import transcribe
    from vocable.server.app import ModelCache
    loads, slow_started = [], threading.Event()

    def fake_load(path, threads=0):
        loads.append(path)
        if "fsdd-digits" in str(path):
            slow_started.set()
            time.sleep(1.0)
        return f"recognizer of {path}"

    monkeypatch.setattr(transcribe, "load", fake_load)
    cache = ModelCache("default", size=3)
    cache.get(cache.default)  # loaded: en-default
    slow = [threading.Thread(target=cache.get, args=("fsdd-digits",)) for _ in range(2)]
    for t in slow:
        t.start()
    assert slow_started.wait(5)
    started = time.monotonic()
    assert cache.get(cache.default).startswith("recognizer of")
    assert time.monotonic() - started < 0.5  # did not wait for fsdd-digits' second-long load
    for t in slow:
        t.join()
    assert sum("fsdd-digits" in str(p) for p in loads) == 1 and len(loads) == 2


def test_a_served_model_is_named_as_trained_unless_that_is_another_models_name(model, tmp_path):
    """Every trained model is model.vocable: served under its meta name ("my-digits"), not "model"; a copy
    whose meta names a bundled model keeps its file's name, so "fsdd-digits" still means the bundled one.
    A model without the English normaliser takes the request's language instead of refusing it."""
    import torch

    from vocable.server.app import ModelCache, _language
    blob = torch.load(model.loaded.path, map_location="cpu", weights_only=True)
    for name, folder in (("my-digits", "a"), ("fsdd-digits", "b"), ("", "c")):
        (tmp_path / folder).mkdir()
        torch.save({**blob, "meta": {**blob["meta"], "name": name}}, tmp_path / folder / "model.vocable")
    assert ModelCache(str(tmp_path / "a" / "model.vocable")).default == "my-digits"
    assert ModelCache(str(tmp_path / "b" / "model.vocable")).default == "model"
    assert ModelCache(str(tmp_path / "c" / "model.vocable")).default == "model"
    (tmp_path / "d").mkdir()  # a copy of a bundled model's file: its stem is a bundled name too
    torch.save({**blob, "meta": {**blob["meta"], "name": " fsdd-digits "}}, tmp_path / "d" / "fsdd-digits.vocable")
    cache = ModelCache(str(tmp_path / "d" / "fsdd-digits.vocable"))
    assert cache.default == "fsdd-digits-file" and cache.allowed["fsdd-digits"] == "fsdd-digits"
    torch.save({**blob, "meta": {**blob["meta"], "name": " my-digits "}}, tmp_path / "d" / "model.vocable")
    assert ModelCache(str(tmp_path / "d" / "model.vocable")).default == "my-digits"
    assert _language(model, "en") == "english"
    from vocable.transcribe import load
    spanish = load(tmp_path / "a" / "model.vocable")
    spanish.tokenizer.normalizer = "basic"
    assert _language(spanish, "es") == "es" and _language(spanish, None) == "unknown"
    assert _language(spanish, "pt-BR") == "pt-BR" and _language(spanish, "spanish") == "spanish"
    from vocable.server.app import ApiError
    for odd in ["<script>alert(1)</script>", "e", "x" * 500, "es es"]:  # echoed back: only a language code
        with pytest.raises(ApiError, match="expected a language code"):
            _language(spanish, odd)


def test_vocable_serve_command_runs_an_exported_model_without_torch(model, exported):
    """`vocable serve` as a user runs it, on the torch-free runtime install: an ONNX export of the model,
    with `import torch` made to fail. It binds 127.0.0.1, answers, streams, and stops on SIGTERM."""
    code = ("import sys; sys.modules['torch'] = None\n"  # `import torch` raises ImportError from here on
            "from vocable.cli import main; sys.exit(main(sys.argv[1:]))")
    with launched_server(["--model", str(exported)], command=[sys.executable, "-c", code],
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=60) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        data, expected = one_digit(model)
        assert client.audio.transcriptions.create(model="whisper-1", file=("a.flac", data)).text == expected
        assert [m.id for m in client.models.list().data] == ["fsdd-digits"]  # its own name, not the file's
        audio, words, _ = digit_stream(model)
        with websockets_sync.connect(stream_url(server.url, api_key="")) as ws:
            assert [e["text"] for e in stream_file(ws, audio) if e["type"] == "final"] == words
        page = httpx.get(server.url + "/")
        assert page.status_code == 200 and "/static/app.js" in page.text
    assert server.process.returncode in (0, -signal.SIGTERM)  # uvicorn shuts down, then re-raises the signal
    assert "Traceback" not in server.output()


def test_serve_refuses_a_missing_model(capsys):
    from vocable.cli import main
    assert main(["serve", "--model", "no-such-model", "--port", str(free_port())]) == 2
    assert capsys.readouterr().err.strip().startswith("vocable: error: no-such-model")


def test_launched_server_reports_why_it_did_not_start():
    with pytest.raises(RuntimeError, match="no-such-model"):
        with launched_server(["--model", "no-such-model"], timeout=60):
            pass


def test_a_keyed_server_refuses_every_request_without_its_key(base_url, model):
    """No key at all is refused like a wrong one: the model list, uploads, and streams."""
    reply = httpx.get(base_url + "/v1/models")
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(base_url + "/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200
    reply = httpx.post(base_url + "/v1/audio/transcriptions", files={"file": ("a.flac", one_digit(model)[0])})
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(InvalidStatus) as info:
        websockets_sync.connect(base_url.replace("http", "ws") + "/v1/audio/stream")
    assert info.value.response.status_code == 401


def test_timestamp_granularities_default_to_segments_and_need_verbose_json(base_url, model):
    auth = {"Authorization": f"Bearer {API_KEY}"}
    url = base_url + "/v1/audio/transcriptions"
    data, expected = one_digit(model)
    verbose = httpx.post(url, files={"file": ("a.flac", data)}, data={"response_format": "verbose_json"},
                         headers=auth).json()
    assert "words" not in verbose and " ".join(s["text"] for s in verbose["segments"]) == expected == verbose["text"]
    reply = httpx.post(url, files={"file": ("a.flac", data)},
                       data={"response_format": "json", "timestamp_granularities[]": "word"}, headers=auth)
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "timestamp_granularities"


def test_a_stream_past_the_servers_length_limit_ends_with_an_error(model, digits):
    _, audio, _, _ = digits
    with running_server(ServerOptions(model=model.loaded.path, max_stream_seconds=1)) as url:
        events = []
        with websockets_sync.connect(url.replace("http", "ws") + "/v1/audio/stream") as ws:
            pcm = (np.clip(audio[: 3 * SAMPLE_RATE], -1, 1) * 32767).astype("<i2").tobytes()
            with contextlib.suppress(ConnectionClosed):  # the server closes the stream (1008) after its error
                for i in range(0, len(pcm), 3200):
                    ws.send(pcm[i: i + 3200])
            with contextlib.suppress(ConnectionClosed):  # what it sent before closing is still read
                while True:
                    events.append(json.loads(ws.recv(timeout=30)))
    errors = [e for e in events if e["type"] == "error"]
    assert errors and errors[-1]["code"] == 400 and errors[-1]["reason"] == "audio_too_long"


def test_serve_takes_its_key_from_the_environment(monkeypatch):
    import vocable.server
    from vocable.cli import main
    served = []
    monkeypatch.setattr(vocable.server, "serve", lambda options, host, port: served.append(options))
    monkeypatch.setenv("VOCABLE_API_KEY", "k")
    assert main(["serve", "--model", "fsdd-digits"]) == 0
    assert served[-1].api_key == "k"
    assert main(["serve", "--model", "fsdd-digits", "--api-key", "given"]) == 0 and served[-1].api_key == "given"
    monkeypatch.delenv("VOCABLE_API_KEY")
    assert main(["serve", "--model", "fsdd-digits"]) == 0 and served[-1].api_key is None
