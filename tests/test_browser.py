"""The page at / in a real headless Chromium: its fake microphone plays a WAV of spoken digits, and the
digits must appear on the page; a file uploaded through the page is transcribed and gives SRT.

Driven over the Chrome DevTools Protocol (a WebSocket). Skipped when Chromium is not installed.
"""

import contextlib
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.test_server import API_KEY, free_port, running_server
from tests.test_stream import DIGITS_MODEL, digit_stream
from vocable.audio import SAMPLE_RATE

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             shutil.which("google-chrome"), "/usr/bin/chromium") if p and Path(p).exists()), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
websockets_sync = pytest.importorskip("websockets.sync.client")
pytest.importorskip("uvicorn")

from vocable.server import ServerOptions  # noqa: E402
from vocable.transcribe import load  # noqa: E402

PAGE_TIMEOUT = 40.0  # seconds for the words to appear (the fake microphone plays in real time)


class DevTools:
    """A minimal Chrome DevTools Protocol client for one page."""

    def __init__(self, ws):
        self.ws, self.next_id = ws, 0

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv(timeout=30))
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def eval(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, done, timeout: float = PAGE_TIMEOUT):
        deadline, value = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if done(value):
                return value
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting on {expression}; last value: {value!r}")


@pytest.fixture(scope="module")
def model():
    return load(DIGITS_MODEL)


@pytest.fixture(scope="module")
def base_url(model):
    with running_server(ServerOptions(model=model.loaded.path, api_key=API_KEY)) as url:
        yield url


@pytest.fixture(scope="module")
def spoken(model, tmp_path_factory):
    """A 16 kHz WAV for Chromium's fake microphone (it loops the file), and the digits spoken in it."""
    audio, digits, _ = digit_stream(model)
    path = tmp_path_factory.mktemp("mic") / "digits.wav"
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    return path, digits


@pytest.fixture(scope="module")
def browser(base_url, spoken, tmp_path_factory):
    """Headless Chromium on the page with ?autostart=1 (it starts recording at once); yields DevTools."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    url = f"{base_url}/?autostart=1&api_key={API_KEY}"
    process = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
         f"--use-file-for-fake-audio-capture={spoken[0]}", "--autoplay-policy=no-user-gesture-required",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            assert process.poll() is None, "chromium exited"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(t for t in targets if t["type"] == "page" and t["url"].startswith(base_url))
        with websockets_sync.connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
            yield DevTools(ws)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def test_spoken_digits_appear_live_on_the_page(browser, spoken):
    _, digits = spoken
    finals = browser.wait_for("[...document.querySelectorAll('#finals p')].map(p => p.lastChild.textContent)",
                              lambda v: v is not None and len(v) >= len(digits))
    assert finals[: len(digits)] == digits
    assert browser.eval("document.body.dataset.state") == "recording"
    assert browser.eval("document.getElementById('status').textContent").startswith("listening")
    # Stop: the microphone goes off at once; the page sends "end", the server answers "done" and the
    # page returns to idle.
    browser.eval("window.heldMedia = live.media; document.getElementById('record').click()")
    assert browser.eval("heldMedia.getTracks().every(t => t.readyState === 'ended')")
    browser.wait_for("document.body.dataset.state", lambda v: v == "idle", timeout=10)


def test_a_server_error_stays_on_the_page_and_stop_while_connecting_is_no_error(browser):
    """The server's error event (here for a message that is not JSON) was overwritten by "idle" when the
    socket closed; a new recording cleared nothing; Stop before the socket opened read as a refusal."""
    browser.wait_for("document.body.dataset.state", lambda v: v in ("idle", "error"), timeout=10)
    browser.eval("document.getElementById('record').click()")
    browser.wait_for("document.body.dataset.state", lambda v: v == "recording", timeout=10)
    assert browser.eval("document.querySelectorAll('#finals p').length") == 0  # a new transcript
    browser.wait_for("live && live.opened", bool, timeout=10)
    browser.eval("live.ws.send('not json')")
    browser.wait_for("document.body.dataset.state", lambda v: v == "error", timeout=10)
    time.sleep(1.0)  # the socket has closed by now: the error is still what the page says
    assert browser.eval("document.body.dataset.state") == "error"
    assert "JSON" in browser.eval("document.getElementById('status').textContent")
    assert browser.eval("live") is None and browser.eval("document.getElementById('record').textContent") == \
        "Start recording"
    browser.eval("document.getElementById('record').click(); document.getElementById('record').click()")
    browser.wait_for("document.body.dataset.state", lambda v: v == "idle", timeout=10)
    assert browser.eval("document.getElementById('status').textContent") == "idle"


def test_upload_through_the_page_and_get_srt(browser, model, tmp_path):
    from tests.conftest import FSDD_FIXTURES
    from vocable.audio import load_audio
    clip = load_audio(FSDD_FIXTURES / "9_theo_0.flac")
    path = tmp_path / "nine.wav"
    sf.write(path, np.concatenate([np.zeros(4000, np.float32), clip, np.zeros(4000, np.float32)]), SAMPLE_RATE)
    expected = model.transcribe(path).text
    root = browser.call("DOM.getDocument")["root"]["nodeId"]
    node = browser.call("DOM.querySelector", nodeId=root, selector="#file")["nodeId"]
    browser.call("DOM.setFileInputFiles", nodeId=node, files=[str(path)])
    browser.eval("document.getElementById('transcribe').click()")
    text = browser.wait_for("document.getElementById('upload-text').textContent", lambda v: bool(v), timeout=20)
    assert text == expected
    assert not browser.eval("document.getElementById('download-srt').disabled")
    srt = browser.eval("transcribeFile('srt')")  # what the Download SRT button saves
    assert srt.splitlines()[0] == "1" and " --> " in srt.splitlines()[1] and expected in srt
    # the buttons save under the file's name with the format's ending
    browser.eval("window.saved = []; window.realClick = HTMLAnchorElement.prototype.click; "
                 "HTMLAnchorElement.prototype.click = function () { saved.push(this.download); }")
    browser.eval("document.getElementById('download-vtt').click(); document.getElementById('download-srt').click()")
    assert browser.wait_for("saved", lambda v: v is not None and len(v) == 2, timeout=20) in (
        ["nine.vtt", "nine.srt"], ["nine.srt", "nine.vtt"])
    browser.eval("HTMLAnchorElement.prototype.click = realClick")


def test_the_pages_words_to_expect_go_with_an_upload(browser, tmp_path):
    """The page's "Words to expect" is the request's prompt: en-default then spells the names its LM lacks."""
    from tests.test_runtime import espeak
    path = tmp_path / "valve.wav"
    sf.write(path, espeak(tmp_path, "open the kellermann valve on the zorbex unit"), SAMPLE_RATE)
    root = browser.call("DOM.getDocument")["root"]["nodeId"]
    node = browser.call("DOM.querySelector", nodeId=root, selector="#file")["nodeId"]
    browser.call("DOM.setFileInputFiles", nodeId=node, files=[str(path)])
    texts, chosen = [], browser.eval("document.getElementById('model').value")
    for prompt in ("", "Kellermann valves for the Zorbex unit"):
        browser.eval(f"document.getElementById('model').value = 'en-default'; "
                     f"document.getElementById('prompt').value = {json.dumps(prompt)}; "
                     f"document.getElementById('upload-text').textContent = ''; "
                     f"document.getElementById('transcribe').click()")
        texts.append(browser.wait_for("document.getElementById('upload-text').textContent", bool, timeout=30))
    browser.eval(f"document.getElementById('model').value = {json.dumps(chosen)}; "
                 f"document.getElementById('prompt').value = ''")
    assert "zorbex" not in texts[0] and texts[1] == "open the kellermann valve on the zorbex unit"


def test_the_page_shows_an_uploads_warnings(browser, model, tmp_path):
    """The server's own model has no LM, so words to expect boost nothing: the page says so."""
    from tests.test_server import one_digit
    path = tmp_path / "digit.flac"
    path.write_bytes(one_digit(model)[0])
    root = browser.call("DOM.getDocument")["root"]["nodeId"]
    node = browser.call("DOM.querySelector", nodeId=root, selector="#file")["nodeId"]
    browser.call("DOM.setFileInputFiles", nodeId=node, files=[str(path)])
    chosen = browser.eval("document.getElementById('model').value")
    browser.eval("document.getElementById('model').value = 'default'; "
                 "document.getElementById('prompt').value = 'zorbex'; "
                 "document.getElementById('upload-status').textContent = ''; "
                 "document.getElementById('transcribe').click()")
    status = browser.wait_for("document.getElementById('upload-status').textContent",
                              lambda text: text and text != "transcribing…", timeout=30)
    browser.eval(f"document.getElementById('model').value = {json.dumps(chosen)}; "
                 f"document.getElementById('prompt').value = ''")
    assert "s of audio — note: prompt: this decoding has no LM" in status


def test_a_full_server_is_said_to_be_busy(browser, base_url):
    """Every stream slot taken: a refused recording is explained as a busy server, not a lost connection.
    (What the page shows when its stream is refused; asked directly, as a click would first need the
    microphone, which headless Chromium now and then fails to open after another test's recording.)"""
    url = base_url.replace("http", "ws") + f"/v1/audio/stream?api_key={API_KEY}"
    with contextlib.ExitStack() as held:
        for _ in range(ServerOptions().max_streams):
            held.enter_context(websockets_sync.connect(url))
        assert browser.eval("explainRefusal()") == "the server is busy (4 streams open)"
    # the slots free again: a refusal is then put down to the key
    browser.wait_for("explainRefusal()", lambda v: v == "refused: check the API key", timeout=10)


def test_a_recording_survives_a_server_restart(browser, model, spoken):
    """The server goes away mid-recording and comes back on the same port: the page says it is
    reconnecting, reconnects, and the transcript goes on with later times (it used to stop for good)."""
    _, digits = spoken
    finals = "[...document.querySelectorAll('#finals p')].map(p => [p.firstChild.textContent, p.lastChild.textContent])"
    port = free_port()
    options = ServerOptions(model=model.loaded.path, api_key=API_KEY)
    with running_server(options, port) as url:
        browser.call("Page.navigate", url=f"{url}/?autostart=1&api_key={API_KEY}")
        browser.wait_for(finals, lambda v: v is not None and len(v) >= 1)
    status = browser.wait_for("document.getElementById('status').textContent", lambda v: "reconnecting" in v,
                              timeout=10)
    assert browser.eval("document.body.dataset.state") == "reconnecting", status
    before = browser.eval(finals)
    with running_server(options, port):
        browser.wait_for("document.body.dataset.state", lambda v: v == "recording", timeout=30)
        assert browser.eval("document.getElementById('status').textContent").startswith("listening")
        after = browser.wait_for(finals, lambda v: len(v) >= len(before) + 2)
        first_new, last_old = float(after[len(before)][0].split("–")[0]), float(before[-1][0].split("–")[1])
        assert first_new > last_old  # the recording's clock, not the new connection's
        assert {text for _, text in after[len(before):]} & set(digits)
        browser.eval("document.getElementById('record').click()")
        browser.wait_for("document.body.dataset.state", lambda v: v == "idle", timeout=10)

