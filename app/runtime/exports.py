"""The export queue: one background worker exports missing graphs, one subprocess at a time.

A request that needs a graph which is not on disk never waits for it: the graph is queued (once,
however many requests ask) and the request gets :class:`ExportPending`, which the app answers with
503 and ``Retry-After``. The worker runs ``python -m app.cli export NAME --progress`` (torch lives only
in that subprocess), reads its JSON progress lines and kills it past a time limit. Order: priority
first (0 the start page's model, 1 the other default models, 2 what users asked for), then arrival.

A server installed without torch (``pip install resviz``: graphs exported on another machine) exports
nothing: a request for a missing graph gets :class:`NotExportedError` naming the ``resviz export``
command that makes it. Several server processes on one models folder (uvicorn workers, Ray replicas on
one node) take turns through a lock file, so one graph is never written by two exports at once.
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from app.manifest import exported_kinds
from app.paths import SERVING_GRAPHS, STATS_GRAPH_MAX_TAPS
from app.runtime.export_jobs import (  # noqa: F401 - the queue's vocabulary, importable from here too
    ANALYSIS_GRAPHS,
    DEFAULTS,
    FAILED_RETRY_S,
    GRAPH_COST,
    GRAPH_ORDER,
    LOCK_FILE,
    PRIORITY_NAMES,
    RECENT,
    START_PAGE,
    USER,
    Command,
    ExportFailedError,
    ExportPending,
    Job,
    NotExportedError,
    _taps,
    cannot_export_message,
    default_command,
    export_hint,
    folder_lock,
    ordered,
    torch_available,
)
from app.specs import SPECS

log = logging.getLogger("resviz.exports")


class ExportQueue:
    """Queues missing graphs and exports them in one worker thread, one subprocess at a time."""

    def __init__(
        self,
        models_dir: Path,
        *,
        timeout_s: float = 1800.0,
        on_demand: bool = True,
        command: Command | None = None,
        can_export: bool | None = None,
    ) -> None:
        self.models_dir = Path(models_dir)
        self.timeout_s = timeout_s
        self.on_demand = on_demand
        # The export subprocess needs torch; a given command (tests' stand-in) is trusted to run.
        self.can_export = can_export if can_export is not None else (command is not None or torch_available())
        self.command = command or default_command(self.models_dir)
        self._cond = threading.Condition()
        self._queued: dict[str, Job] = {}
        self._running: Job | None = None
        self._recent: list[Job] = []
        self._seq = 0
        self._stop = False
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self.runs = 0  # subprocesses started (tests count them)
        # Seconds per unit of GRAPH_COST per tap, and the subprocess start-up: learnt from each run.
        self._per_unit = 0.006
        self._startup = 8.0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="resviz-export", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the worker: the running subprocess is killed, queued exports are dropped."""
        with self._cond:
            self._stop = True
            proc = self._proc
            self._cond.notify_all()
        if proc is not None and proc.poll() is None:
            proc.kill()
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ queueing

    def missing(self, name: str, variant: str, kinds: tuple[str, ...] | list[str]) -> set[str]:
        """Which of ``kinds`` are not on disk (stats graphs of very deep models never are: they are skipped)."""
        have = exported_kinds(self.models_dir, name, variant)
        skip = {"stats-running", "stats-batch"} if _taps(name) > STATS_GRAPH_MAX_TAPS else set()
        return set(kinds) - have - skip

    def enqueue(
        self,
        name: str,
        variant: str,
        kinds: tuple[str, ...] | list[str] = SERVING_GRAPHS,
        priority: int = USER,
        first: tuple[str, ...] = (),
    ) -> Job | None:
        """Queue the missing ones of ``kinds`` (``first`` in front); the job that will export them, or None."""
        if not self.can_export:
            return None
        missing = self.missing(name, variant, kinds)
        key = f"{name}@{variant}"
        with self._cond:
            run = self._running
            if run is not None and run.key == key:
                missing -= set(run.kinds) - set(run.done) if run.state == "running" else set()
            if not missing:
                return run if run is not None and run.key == key and (set(kinds) & set(run.kinds)) else None
            job = self._queued.get(key)
            if job is None:
                self._seq += 1
                job = Job(name, variant, ordered(missing, first), priority, self._seq)
                self._queued[key] = job
                log.info("queued the export of %s: %s", key, ", ".join(job.kinds))
            else:
                job.kinds = ordered(set(job.kinds) | missing, first or ANALYSIS_GRAPHS)
                job.priority = min(job.priority, priority)
            self._cond.notify_all()
            return job

    def enqueue_defaults(self, start_model: str, default_models: tuple[str, ...], variant_of: Callable) -> None:
        """Queue the start page's analysis graphs first, then every serving graph of the default models."""
        if not self.can_export:
            missing = [
                f"{n}@{variant_of(n)}"
                for n in default_models
                if n in SPECS and self.missing(n, variant_of(n), SERVING_GRAPHS)
            ]
            if missing:
                log.warning(
                    "torch is not installed, so this server exports nothing; not exported in %s: %s "
                    "(run `resviz export --defaults` where the export extra is installed and copy the folders here)",
                    self.models_dir,
                    ", ".join(missing),
                )
            return
        if start_model in SPECS:
            self.enqueue(start_model, variant_of(start_model), ANALYSIS_GRAPHS, START_PAGE, ANALYSIS_GRAPHS)
        for name in default_models:
            if name in SPECS:
                self.enqueue(name, variant_of(name), SERVING_GRAPHS, DEFAULTS, ANALYSIS_GRAPHS)

    def require(self, name: str, variant: str, kinds: tuple[str, ...]) -> None:
        """Return if ``kinds`` are on disk; else queue them (unless on-demand is off) and raise ExportPending."""
        need = self.missing(name, variant, kinds)
        if not need:
            return
        key = f"{name}@{variant}"
        with self._cond:
            pending = self._pending_for(key, need)
        if pending is None:
            failed = self._recent_failure(key)
            if failed is not None:
                raise ExportFailedError(
                    f"exporting {key} failed {time.time() - failed.finished_at:.0f} s ago: {failed.error}; "
                    f"it is tried again after {FAILED_RETRY_S:.0f} s, or run `{export_hint(name, variant)}`"
                )
            if not self.can_export:
                raise NotExportedError(cannot_export_message(self.models_dir, name, variant))
            if not self.on_demand:
                raise NotExportedError(
                    f"{name} with weights {variant!r} is not exported on this server and exports on request are "
                    f"off (RESVIZ_EXPORT_ON_DEMAND=false); an operator can run `{export_hint(name, variant)}`"
                )
            pending = self.enqueue(name, variant, SERVING_GRAPHS + tuple(need), USER, tuple(ordered(need)))
            if pending is None:  # exported between the check and now
                if not self.missing(name, variant, kinds):
                    return
                raise ExportFailedError(f"could not queue the export of {key}")
        view = self.view(pending)
        raise ExportPending(self._message(view, need), view, self._retry_after(view, need))

    def _pending_for(self, key: str, need: set[str]) -> Job | None:
        run = self._running
        if run is not None and run.key == key and need & (set(run.kinds) - set(run.done)):
            return run
        job = self._queued.get(key)
        if job is not None and need & set(job.kinds):
            return job
        return None

    def _recent_failure(self, key: str) -> Job | None:
        now = time.time()
        with self._cond:
            for job in reversed(self._recent):
                if job.key == key:
                    if job.state == "failed" and now - (job.finished_at or 0) < FAILED_RETRY_S:
                        return job
                    return None
        return None

    # ------------------------------------------------------------------ progress

    def _graph_seconds(self, name: str, kind: str) -> float:
        return GRAPH_COST.get(kind, 1.0) * _taps(name) * self._per_unit + 0.3

    def _estimate(self, job: Job, now: float) -> tuple[float, float]:
        """(fraction done, seconds left) of one job."""
        remaining = [k for k in job.kinds if k not in job.done]
        total = self._startup + sum(self._graph_seconds(job.name, k) for k in job.kinds)
        left = sum(self._graph_seconds(job.name, k) for k in remaining)
        if job.state == "running" and job.started is not None:
            if job.graph_started is None:  # the subprocess is still starting (importing torch)
                left += max(0.2 * self._startup, self._startup - (now - job.started))
            elif job.current in remaining:
                cur = self._graph_seconds(job.name, job.current)
                left -= min(0.8 * cur, now - job.graph_started)
        elif job.state == "queued":
            left += self._startup
        left = max(0.0, left) if job.state in ("queued", "running") else 0.0
        return (max(0.0, min(1.0, 1 - left / total)) if total else 1.0), left

    def view(self, job: Job) -> dict:
        """What the API shows of one export."""
        now = time.monotonic()
        fraction, left = self._estimate(job, now)
        ahead = 0.0
        position = 0
        if job.state == "queued":
            with self._cond:
                before = [j for j in self._sorted_queue() if (j.priority, j.seq) < (job.priority, job.seq)]
                run = self._running
            position = len(before) + (1 if run else 0)
            ahead = sum(self._estimate(j, now)[1] for j in before) + (self._estimate(run, now)[1] if run else 0)
        return {
            "key": job.key,
            "model": job.name,
            "weights": job.variant,
            "state": job.state,
            "graphs": list(job.kinds),
            "graphs_done": list(job.done),
            "current": job.current,
            "progress": round(fraction, 3),
            "estimate_s": round(ahead + left, 1),
            "position": position,
            "priority": PRIORITY_NAMES.get(job.priority, str(job.priority)),
            "elapsed_s": round(now - job.started, 1) if job.started and job.state == "running" else None,
            "error": job.error or None,
        }

    def snapshot(self) -> dict:
        """Every pending export (running first, then in queue order) and the recently finished ones."""
        with self._cond:
            pending = ([self._running] if self._running else []) + self._sorted_queue()
            recent = list(reversed(self._recent))
        return {
            "pending": [self.view(j) for j in pending],
            "recent": [self.view(j) for j in recent],
            "busy": bool(pending),
            "on_demand": self.on_demand,
            "can_export": self.can_export,
        }

    def idle(self) -> bool:
        """Whether nothing is queued or running."""
        with self._cond:
            return self._running is None and not self._queued

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is queued or running (True), or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._running is not None or self._queued:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
        return True

    def _sorted_queue(self) -> list[Job]:
        return sorted(self._queued.values(), key=lambda j: (j.priority, j.seq))

    def _message(self, view: dict, need: set[str]) -> str:
        what = f"{view['model']} (weights {view['weights']})"
        eta = f"about {view['estimate_s']:.0f} s left" if view["estimate_s"] >= 1 else "almost done"
        if view["state"] == "running":
            done = len(view["graphs_done"])
            return (
                f"{what} is being exported to ONNX for this server: {done} of {len(view['graphs'])} graphs "
                f"done, {eta}. The page retries by itself."
            )
        return (
            f"{what} is queued for export to ONNX (position {view['position'] + 1}, {eta}). The page retries by itself."
        )

    def _retry_after(self, view: dict, need: set[str]) -> int:
        return int(max(1, min(10, round(view["estimate_s"] / 3))))

    # ------------------------------------------------------------------ the worker

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queued and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                job = self._sorted_queue()[0]
                del self._queued[job.key]
                missing = self.missing(job.name, job.variant, job.kinds)
                job.kinds = [k for k in job.kinds if k in missing]
                job.state = "running"
                job.started = time.monotonic()
                self._running = job
            try:
                if job.kinds:
                    self._run(job)
                job.state = "done"
            except Exception as exc:  # noqa: BLE001 - any failure is the job's, the worker goes on
                job.state = "failed"
                job.error = str(exc) or type(exc).__name__
                log.warning("export of %s failed: %s", job.key, job.error)
            job.current = None
            job.finished_at = time.time()
            with self._cond:
                self._running = None
                self._recent = [*self._recent, job][-RECENT:]
                self._cond.notify_all()

    def _run(self, job: Job) -> None:
        """Export ``job``'s graphs that are still missing once this process holds the folder's lock."""
        with folder_lock(self.models_dir, lambda: self._stop):
            missing = self.missing(job.name, job.variant, job.kinds)  # another process may have made them
            job.kinds = [k for k in job.kinds if k in missing]
            if job.kinds:
                self._run_subprocess(job)

    def _run_subprocess(self, job: Job) -> None:
        """Run one export subprocess for ``job``, reading its progress; raise on failure or timeout."""
        cmd = self.command(job.name, job.variant, job.kinds)
        log.info("exporting %s in a subprocess: %s", job.key, " ".join(cmd))
        job.current = job.kinds[0]
        with tempfile.TemporaryFile() as err:
            with self._cond:
                if self._stop:
                    raise RuntimeError("the server is stopping")
                self._proc = proc = subprocess.Popen(
                    cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True
                )
                self.runs += 1
            timed_out = threading.Event()

            def kill() -> None:
                timed_out.set()
                proc.kill()

            timer = threading.Timer(self.timeout_s, kill)
            timer.daemon = True
            timer.start()
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    self._progress(job, line)
                rc = proc.wait()
            finally:
                timer.cancel()
                with self._cond:
                    self._proc = None
            if rc != 0:
                if timed_out.is_set():
                    raise RuntimeError(f"the export ran past its limit of {self.timeout_s:g} s and was stopped")
                err.seek(0)
                lines = err.read().decode(errors="replace").strip().splitlines()
                raise RuntimeError(f"the export exited with status {rc}: {lines[-1] if lines else 'no message'}")
        log.info("exported %s in %.1f s", job.key, time.monotonic() - (job.started or 0))

    def _progress(self, job: Job, line: str) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        now = time.monotonic()
        if event.get("event") == "start":
            if job.started is not None:
                self._startup = 0.5 * self._startup + 0.5 * (now - job.started)
            job.graph_started = now
            todo = [k for k in event.get("graphs", []) if isinstance(k, str)]
            if todo:
                job.kinds = [*job.done, *[k for k in todo if k not in job.done]]
                job.current = next((k for k in job.kinds if k not in job.done), None)
        elif event.get("event") == "graph":
            kind = event.get("graph")
            if isinstance(kind, str) and kind not in job.done:
                seconds = float(event.get("seconds") or 0)
                predicted = self._graph_seconds(job.name, kind) - 0.3
                if seconds > 0 and predicted > 0:
                    self._per_unit *= (seconds / predicted) ** 0.5  # a damped step towards this machine's speed
                job.done.append(kind)
            job.current = next((k for k in job.kinds if k not in job.done), None)
            job.graph_started = now
