"""What the export queue works with: priorities, graph order and cost, jobs, the export command, messages.

``app.runtime.exports.ExportQueue`` runs the jobs; this module holds the pieces that do not depend on it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from app.specs import SPECS

try:
    import fcntl
except ImportError:  # not on a POSIX system: exports are not serialised across processes
    fcntl = None  # type: ignore[assignment]

START_PAGE, DEFAULTS, USER = 0, 1, 2
PRIORITY_NAMES = {START_PAGE: "start page", DEFAULTS: "default model", USER: "requested"}
# What an analysis needs first (the manifest comes with the first graph): then the rest.
GRAPH_ORDER = (
    "running",
    "stats-running",
    "batch",
    "stats-batch",
    "grad-running",
    "lesion",
    "grad-batch",
    "explain-running",
    "explain-batch",
    "bare",
)
ANALYSIS_GRAPHS = ("running", "stats-running")
# Relative cost of each graph's export (measured: the backward graphs take about twice the forward).
GRAPH_COST = {
    "running": 1.0,
    "batch": 1.1,
    "stats-running": 1.8,
    "stats-batch": 2.0,
    "grad-running": 2.6,
    "grad-batch": 2.6,
    "explain-running": 2.0,
    "explain-batch": 2.0,
    "lesion": 0.6,
    "bare": 0.8,
}
FAILED_RETRY_S = 60.0  # a failed export is not queued again (by requests) for this long
RECENT = 20  # finished exports kept for the listing

Command = Callable[[str, str, list[str]], list[str]]
LOCK_FILE = ".export.lock"  # in the models folder: one export at a time across processes


def torch_available() -> bool:
    """Whether this environment can export graphs (torch, from the ``export`` extra, is importable)."""
    return importlib.util.find_spec("torch") is not None


def export_hint(name: str, variant: str) -> str:
    """The command that exports a model's serving graphs, for messages."""
    return f"resviz export {name} --weights {variant}"


def cannot_export_message(models_dir: Path, name: str, variant: str) -> str:
    """Why a torch-free server answers a request for graphs it does not have, and what makes them."""
    return (
        f"{name} with weights {variant!r} is not exported in this server's models folder ({models_dir}), and this "
        f"server cannot export it: torch is not installed here (it serves graphs exported elsewhere). Run "
        f"`{export_hint(name, variant)}` where resviz is installed with its export extra "
        f"(pip install 'resviz[export]') and copy {name}/{variant}/ into this folder (RESVIZ_MODELS_DIR)."
    )


class ExportPending(Exception):
    """The graphs a request needs are being exported; try again after ``retry_after`` seconds."""

    def __init__(self, message: str, job: dict, retry_after: int) -> None:
        super().__init__(message)
        self.job = job
        self.retry_after = retry_after


class NotExportedError(KeyError):
    """A graph is missing and request-triggered exports are off."""

    def __str__(self) -> str:
        return str(self.args[0])


class ExportFailedError(RuntimeError):
    """The export of a model's graphs failed recently (the message says why)."""


def default_command(models_dir: Path) -> Command:
    """The argv of one export subprocess: the CLI with progress lines, skipping graphs on disk."""

    def command(name: str, variant: str, kinds: list[str]) -> list[str]:
        return [
            sys.executable,
            "-m",
            "app.cli",
            "--models-dir",
            str(models_dir),
            "export",
            name,
            "--weights",
            variant,
            "--graphs",
            ",".join(kinds),
            "--missing-only",
            "--progress",
        ]

    return command


def ordered(kinds: set[str] | list[str] | tuple[str, ...], first: tuple[str, ...] = ()) -> list[str]:
    """``kinds`` with ``first`` in front, then in GRAPH_ORDER."""
    rank = {k: i for i, k in enumerate(GRAPH_ORDER)}
    return sorted(set(kinds), key=lambda k: (k not in first, rank.get(k, len(rank))))


def _taps(name: str) -> int:
    """Roughly how many taps a model has (the export cost grows with it)."""
    spec = SPECS[name]
    return 6 + (5 if spec.block == "basic" else 8) * spec.num_blocks


@dataclass
class Job:
    """One pending or finished export of some graphs of one model with one set of weights."""

    name: str
    variant: str
    kinds: list[str]
    priority: int
    seq: int
    state: str = "queued"  # queued | running | done | failed
    done: list[str] = field(default_factory=list)
    current: str | None = None
    queued_at: float = field(default_factory=time.time)
    started: float | None = None  # monotonic
    graph_started: float | None = None  # monotonic
    finished_at: float | None = None  # wall clock
    error: str = ""

    @property
    def key(self) -> str:
        """``name@weights``."""
        return f"{self.name}@{self.variant}"


@contextlib.contextmanager
def folder_lock(models_dir: Path, stopping: Callable[[], bool]) -> Iterator[None]:
    """Hold the models folder's export lock: another process's export of the same folder finishes first."""
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        handle = open(models_dir / LOCK_FILE, "a+")  # closed by the with below
    except OSError:  # a read-only folder: the export itself will say what is wrong
        handle = None
    if handle is None or fcntl is None:
        yield
        return
    with handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if stopping():
                    raise RuntimeError("the server is stopping") from None
                time.sleep(0.25)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
