"""Start `vocable serve` in a child process on a free local port and wait until it answers.

For scripts, benchmarks and tests that need a real server process:

    with launched_server(["--model", "en-default"]) as server:
        httpx.post(server.url + "/v1/audio/transcriptions", ...)
    print(server.output())  # what the server printed (kept in a temporary file: a pipe could fill and block it)
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO
from urllib.error import URLError
from urllib.request import urlopen

START_TIMEOUT = 120.0  # seconds for the model to load and the port to open
POLL_SECONDS = 0.2


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LaunchedServer:
    process: subprocess.Popen
    url: str  # http://127.0.0.1:PORT
    log: IO[str]  # the process's stdout and stderr

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()


@contextlib.contextmanager
def launched_server(serve_args: Sequence[str] = (), command: Sequence[str] | None = None, env: dict | None = None,
                    timeout: float = START_TIMEOUT) -> Iterator[LaunchedServer]:
    """Run `command serve --port P *serve_args` (default command: this python's `-m vocable.cli`) until
    /health answers; yields the LaunchedServer and terminates the process after the block."""
    port = free_port()
    command = list(command or [sys.executable, "-m", "vocable.cli"])
    log = tempfile.TemporaryFile("w+")
    process = subprocess.Popen([*command, "serve", "--port", str(port), *serve_args], env=env,
                               stdout=log, stderr=subprocess.STDOUT, text=True)
    server = LaunchedServer(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"vocable serve exited with code {process.returncode}: "
                                   f"{server.output().strip()[-2000:]}")
            with contextlib.suppress(URLError, OSError):
                with urlopen(server.url + "/health", timeout=2) as response:
                    if response.status == 200:
                        break
            if time.monotonic() > deadline:
                raise RuntimeError(f"vocable serve did not answer on {server.url} within {timeout:.0f} s")
            time.sleep(POLL_SECONDS)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
