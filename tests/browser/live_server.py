"""The real resviz server in a subprocess on a free port, and headless Debian chromium (browser tests, bench)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

# `uvicorn --factory app.main:create_app` cannot pass settings, so a tiny launcher builds the app itself.
LAUNCHER = """
import sys
from pathlib import Path
import uvicorn
from app.config import Settings
from app.main import create_app
models_dir, data_dir, port, names = sys.argv[1], sys.argv[2], int(sys.argv[3]), tuple(sys.argv[4].split(","))
settings = Settings(models_dir=Path(models_dir), data_dir=Path(data_dir), default_models=names)
uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
"""


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """Start ``create_app(Settings(...))`` under uvicorn in a subprocess; ``url`` once it answers /healthz."""

    def __init__(
        self,
        data_dir: Path,
        models: tuple[str, ...] = ("resnet20",),
        models_dir: Path | None = None,
        wait_exports: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.models = models
        self.models_dir = models_dir or REPO / "models"  # the repo's export cache
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.data_dir / "server.log"
        self.proc: subprocess.Popen | None = None
        self.wait_exports = wait_exports

    def start(self, timeout: float = 300) -> str:
        """Launch and wait for /healthz, then (with ``wait_exports``) until the background exports are done."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        args = [sys.executable, "-c", LAUNCHER, str(self.models_dir), str(self.data_dir), str(self.port)]
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen([*args, ",".join(self.models)], cwd=REPO, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as r:
                    if r.status == 200 and (not self.wait_exports or not self.exports_busy()):
                        return self.url
            except OSError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"the server did not answer /healthz within {timeout:.0f} s:\n{self.log_tail()}")

    def exports_busy(self) -> bool:
        """Whether the server's export worker has exports pending (GET /api/exports)."""
        with urllib.request.urlopen(f"{self.url}/api/exports", timeout=5) as r:
            return bool(json.loads(r.read())["busy"])

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's output."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Terminate the server (kill it if it does not stop within 10 s)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> LiveServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def launch_chromium(playwright, headless: bool = True):  # noqa: ANN001, ANN201 - Playwright types
    """Debian's chromium through Playwright (no `playwright install` needed)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=headless, args=CHROMIUM_ARGS)
