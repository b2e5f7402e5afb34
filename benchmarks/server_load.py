"""Load on the server over loopback: N concurrent WebSocket streams and M concurrent upload clients.

    python benchmarks/server_load.py [--streams 4] [--uploaders 2] [--rounds 3] [--model fsdd-digits]

Starts `vocable serve` on a free 127.0.0.1 port in a subprocess, then runs bounded loops (each client
does --rounds iterations and stops; the whole run is killed after --timeout seconds):
- a streamer sends a stream of digits (FSDD test takes joined by 1 s silences) at real-time pace in
  100 ms chunks and records, per digit, the time from the digit's end having been sent to its final
  event (this includes the endpointer's silence wait), and the time to the first partial;
- an uploader posts a few-second WAV to /v1/audio/transcriptions with the openai client.
Reports latency percentiles, errors (any non-2xx or exception, and refused streams), and the server's
peak resident memory (VmHWM from /proc).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vocable.errors import run_script  # noqa: E402
from streaming import FSDD_TEST, GAP, build_streams, machine  # noqa: E402

from vocable.server.launch import launched_server  # noqa: E402

SAMPLE_RATE = 16000
CHUNK_SECONDS = 0.1


def peak_rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.values: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}

    def add(self, key: str, value: float) -> None:
        with self.lock:
            self.values.setdefault(key, []).append(value)

    def error(self, key: str) -> None:
        with self.lock:
            self.errors[key] = self.errors.get(key, 0) + 1


def streamer(url: str, audio: np.ndarray, truth, rounds: int, stats: Stats) -> None:
    from websockets.sync.client import connect
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    step = int(CHUNK_SECONDS * SAMPLE_RATE)
    for _ in range(rounds):
        sent_end = {}  # digit index → wall time when the chunk holding its end was sent
        received = []
        try:
            with connect(url, open_timeout=30) as ws:
                def reader():
                    for message in ws:
                        received.append((time.monotonic(), json.loads(message)))

                thread = threading.Thread(target=reader, daemon=True)
                thread.start()
                started = time.monotonic()
                for n, i in enumerate(range(0, len(audio), step)):
                    time.sleep(max(0.0, started + n * CHUNK_SECONDS - time.monotonic()))  # real-time pace
                    ws.send(pcm[2 * i: 2 * (i + step)])
                    for k, (_, _, end) in enumerate(truth):
                        if k not in sent_end and (i + step) / SAMPLE_RATE >= end:
                            sent_end[k] = time.monotonic()
                ws.send(json.dumps({"type": "end"}))
                thread.join(30)
        except Exception as e:  # refused (429) or dropped: counted, the loop goes on
            stats.error(f"stream {type(e).__name__}")
            continue
        finals = [(t, e) for t, e in received if e["type"] == "final"]
        partials = [(t, e) for t, e in received if e["type"] == "partial"]
        if any(e["type"] == "error" for _, e in received):
            stats.error("stream error event")
        for k, (text, start, end) in enumerate(truth):
            mine = [(t, e) for t, e in finals if start - 0.5 <= e["start"] <= end]
            if mine and k in sent_end:
                stats.add("final", mine[0][0] - sent_end[k])
            first = [t for t, e in partials if start - 0.5 <= e["start"] <= end]
            if first:
                stats.add("first partial", first[0] - (started + start))
            if [e["text"] for _, e in mine] != [text]:
                stats.error("stream wrong digit")


def uploader(base: str, wav: bytes, rounds: int, stats: Stats) -> None:
    import openai
    client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=60)
    for _ in range(rounds):
        started = time.monotonic()
        try:
            client.audio.transcriptions.create(model="whisper-1", file=("digits.wav", wav))
            stats.add("upload", time.monotonic() - started)
        except Exception as e:
            stats.error(f"upload {type(e).__name__}")


def line(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:<16} {'n/a':>8}"
    p50, p90, p99 = np.percentile(values, [50, 90, 99]) * 1000
    return f"{name:<16} {len(values):>6} {p50:8.0f} {p90:8.0f} {p99:8.0f} {max(values) * 1000:8.0f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="fsdd-digits", help="the streams are FSDD digits (default: %(default)s)")
    parser.add_argument("--streams", type=int, default=4, help="concurrent WebSocket streams")
    parser.add_argument("--uploaders", type=int, default=2, help="concurrent upload clients")
    parser.add_argument("--rounds", type=int, default=3, help="iterations per client")
    parser.add_argument("--max-streams", type=int, default=0, help="server limit (default: --streams)")
    parser.add_argument("--workers", type=int, default=2, help="server inference calls at once")
    parser.add_argument("--timeout", type=float, default=600, help="stop everything after this many seconds")
    args = parser.parse_args()
    if not FSDD_TEST.is_dir():
        sys.exit(f"{FSDD_TEST} is not available: this benchmark needs FSDD's test takes")
    (audio, truth), = build_streams(5)
    buffer = io.BytesIO()
    sf.write(buffer, audio, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    serve_args = ["--model", args.model, "--max-streams", str(args.max_streams or args.streams),
                  "--workers", str(args.workers)]
    try:
        with launched_server(serve_args) as server:
            measure(server.url, server.process.pid, audio, truth, buffer.getvalue(), args)
    except RuntimeError as e:
        sys.exit(str(e))


def measure(base: str, pid: int, audio: np.ndarray, truth: list, upload: bytes, args) -> None:
    """Drive the load against the server at `base` (process `pid`) and print the latency table."""
    stats = Stats()
    idle_rss = peak_rss_mb(pid)
    threads = [threading.Thread(target=streamer, args=(base.replace("http", "ws") + "/v1/audio/stream", audio,
                                                        truth, args.rounds, stats), daemon=True)
               for _ in range(args.streams)]
    threads += [threading.Thread(target=uploader, args=(base, upload, args.rounds, stats), daemon=True)
                for _ in range(args.uploaders)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, args.timeout - (time.monotonic() - started)))
    elapsed = time.monotonic() - started
    timed_out = any(t.is_alive() for t in threads)
    peak = peak_rss_mb(pid)
    print(f"machine: {machine()}; server and clients on the same machine, 127.0.0.1")
    print(f"model: {args.model}; data: {len(truth)} FSDD test digits with {GAP:g} s gaps "
          f"({len(audio) / SAMPLE_RATE:.1f} s), streamed in real time in {CHUNK_SECONDS * 1000:.0f} ms chunks")
    print(f"load: {args.streams} streams + {args.uploaders} uploaders x {args.rounds} rounds, server workers "
          f"{args.workers}; {elapsed:.1f} s{' (TIMED OUT)' if timed_out else ''}\n")
    print(f"{'latency':<16} {'n':>6} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for key in ("first partial", "final", "upload"):
        print(line(key, stats.values.get(key, [])))
    print("\n'final' is from the chunk holding a digit's end being sent to its final event; it includes the "
          "0.6 s endpoint silence.")
    print(f"errors: {stats.errors or 'none'}")
    print(f"server peak RSS: {peak:.0f} MB (after start: {idle_rss:.0f} MB)")


if __name__ == "__main__":
    run_script(main)
