"""A tiny HTTP service whose health really degrades, for the monitor tests and bench.

    python tests/degrading_service.py PORT

GET /health answers 200 "ok" while healthy. POST /control?mode=... changes how it behaves:

- ok: healthy again
- slow&delay_ms=D: every /health answer takes D ms
- degrade&step_ms=S&fail_ms=F: every /health answer takes S ms longer than the one
  before (a queue that keeps growing); once it would take more than F ms, /health
  answers 503 from then on
- fail: /health answers 503 at once

Kill it (-9) for a service that is simply gone. It prints "ready PORT" once it listens.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mode = "ok"
        self.delay_ms = 0.0
        self.step_ms = 0.0
        self.fail_ms = 0.0

    def next_answer(self) -> tuple[float, int]:
        """(seconds to take, status) of the next /health answer."""
        with self.lock:
            if self.mode == "fail":
                return 0.0, 503
            if self.mode == "slow":
                return self.delay_ms / 1000, 200
            if self.mode == "degrade":
                self.delay_ms += self.step_ms
                if self.delay_ms > self.fail_ms:
                    self.mode = "fail"
                    return 0.0, 503
                return self.delay_ms / 1000, 200
            return 0.0, 200


STATE = State()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if urlparse(self.path).path != "/health":
            self._answer(404, b"not found")
            return
        delay, status = STATE.next_answer()
        time.sleep(delay)
        self._answer(status, b"ok" if status == 200 else b"unavailable")

    def do_POST(self) -> None:
        url = urlparse(self.path)
        if url.path != "/control":
            self._answer(404, b"not found")
            return
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        with STATE.lock:
            STATE.mode = query.get("mode", "ok")
            STATE.delay_ms = float(query.get("delay_ms", 0))
            STATE.step_ms = float(query.get("step_ms", 0))
            STATE.fail_ms = float(query.get("fail_ms", 0))
        self._answer(200, STATE.mode.encode())

    def _answer(self, status: int, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the prober gave up waiting: that is the point of a slow answer

    def log_message(self, format: str, *args: object) -> None:
        pass


class DegradingService:
    """The service as a subprocess, for tests and benches: start, degrade, kill -9, restart."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> DegradingService:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(self.port)],
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        # one line once it listens; EOF if it died (port taken)
        line = self.process.stdout.readline().decode()
        if not line.startswith("ready"):
            self.kill()
            raise RuntimeError(f"degrading service did not start on {self.port}: {line!r}")
        return self

    def control(self, mode: str, **params: float) -> None:
        query = urlencode({"mode": mode, **params})
        request = urllib.request.Request(f"{self.url}/control?{query}", method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200

    def kill(self) -> None:
        """kill -9: the service is gone, no goodbye."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None


def main() -> None:
    port = int(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"ready {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
