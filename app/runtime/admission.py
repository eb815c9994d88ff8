"""One admission gate in front of every graph run: K runs at once, a bounded queue, shared work.

A lecture is a burst. The gate keeps it from becoming a pile-up:

- at most ``slots`` jobs run at once, on a pool of exactly that many threads (with each ONNX
  Runtime session given ``cores // slots`` intra-op threads, K runs fill the cores and no more);
- a FIFO queue holds the rest; a job is refused at once with ``Overloaded`` (HTTP 503 +
  Retry-After) when the queue is full or its estimated wait is longer than ``max_wait_s``;
- identical jobs in flight (same key) share one computation, and the result lands in the cache;
- a waiting request whose client has gone stops waiting, and a queued job that nobody waits
  for any more is dropped before it runs.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from app.runtime.cache import LRUCache

POLL_S = 0.25  # how often a waiting request checks that its client is still there


class Overloaded(RuntimeError):
    """The server is at capacity: try again after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ClientGone(RuntimeError):
    """The client disconnected while its request waited."""


@dataclass
class Job:
    """A unit of graph work: a key naming its result (None: not shared), the function, how to cache it."""

    key: Hashable | None
    run: Callable[[], Any]
    cost: str = "default"  # jobs of one cost class take similar time (e.g. "analyze:resnet50")
    cache: bool = True


@dataclass
class FollowUp:
    """A job's result together with more work it leaves behind (queued as soon as the result is out)."""

    result: Any
    then: Job


@dataclass
class _Flight:
    task: asyncio.Task
    waiting: int = 1
    started: bool = False
    dropped: bool = False


@dataclass
class _Costs:
    """Recent job durations per cost class (for wait estimates): the median of the last few runs, so one
    cold run (a session opened, a graph optimised) does not make every later estimate too long."""

    seconds: dict[str, deque] = field(default_factory=dict)

    def estimate(self, cost: str) -> float:
        runs = self.seconds.get(cost) or self.seconds.get("default")
        return float(sorted(runs)[len(runs) // 2]) if runs else 0.2

    def record(self, cost: str, dt: float) -> None:
        for key in (cost, "default"):
            self.seconds.setdefault(key, deque(maxlen=9)).append(dt)


class Gate:
    """Admission, queueing and single flight for graph work; ``submit`` from async code only."""

    def __init__(self, slots: int, queue_length: int, max_wait_s: float, cache: LRUCache | None = None) -> None:
        self.slots = max(1, slots)
        self.queue_length = max(0, queue_length)
        self.max_wait_s = max_wait_s
        self.cache = cache
        self._pool = ThreadPoolExecutor(self.slots, thread_name_prefix="graph")
        self._running = 0
        self._waiters: deque[tuple[asyncio.Future, float]] = deque()
        self._flights: dict[Hashable, _Flight] = {}
        self._costs = _Costs()
        self._lock = threading.Lock()  # the counters are read by /readyz from any thread
        self.completed = 0
        self.rejected = 0
        self.dropped = 0
        self.shared = 0

    # ------------------------------------------------------------ public

    async def submit(self, job: Job, is_disconnected: Callable[[], Awaitable[bool]] | None = None) -> Any:
        """The job's result: from the cache, from an identical job in flight, or computed under the gate."""
        if job.key is not None and job.cache and self.cache is not None:
            hit = self.cache.get(job.key)
            if hit is not None:
                return hit
        flight = self._flights.get(job.key) if job.key is not None else None
        if flight is not None and not flight.dropped:
            flight.waiting += 1
            self.shared += 1
        else:
            ticket = self._reserve(job.cost)  # raises Overloaded before anything is queued
            flight = _Flight(asyncio.ensure_future(self._execute(job, ticket)))
            if job.key is not None:
                key = job.key
                self._flights[key] = flight
                flight.task.add_done_callback(lambda _t, k=key, f=flight: self._forget(k, f))
        return await self._wait(flight, is_disconnected)

    def retry_after(self, cost: str = "default") -> int:
        """Seconds a refused client should wait: the queue's estimated time to drain, at least 1."""
        with self._lock:
            queued = sum(s for _, s in self._waiters)
        return max(1, min(60, math.ceil((queued + self._costs.estimate(cost)) / self.slots)))

    def info(self) -> dict:
        """Slots, running and queued jobs, counters (for /readyz)."""
        with self._lock:
            return {
                "slots": self.slots,
                "running": self._running,
                "queued": len(self._waiters),
                "queue_length": self.queue_length,
                "max_wait_s": self.max_wait_s,
                "completed": self.completed,
                "rejected": self.rejected,
                "dropped": self.dropped,
                "shared": self.shared,
            }

    def close(self) -> None:
        """Stop the worker threads (running jobs finish)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------ internals

    def _reserve(self, cost: str) -> asyncio.Future | None:
        """Take a slot now (None) or a place in the queue (a future resolved when a slot is handed over)."""
        with self._lock:
            if self._running < self.slots and not self._waiters:
                self._running += 1
                return None
            estimate = self._costs.estimate(cost)
            wait = (sum(s for _, s in self._waiters) + estimate) / self.slots
            if len(self._waiters) >= self.queue_length or wait > self.max_wait_s:
                self.rejected += 1
                full = len(self._waiters) >= self.queue_length
                reason = (
                    f"{len(self._waiters)} requests are queued" if full else f"the wait would be about {wait:.0f} s"
                )
                retry = max(1, min(60, math.ceil(wait)))
                raise Overloaded(
                    f"The server is busy ({reason}); please try again in {retry} s. Nothing was lost: "
                    "the same request will work then.",
                    retry,
                )
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append((fut, estimate))
            return fut

    def _release(self) -> None:
        with self._lock:
            while self._waiters:
                fut, _ = self._waiters.popleft()
                if not fut.done():
                    fut.set_result(None)  # the slot passes straight to the next in line
                    return
            self._running -= 1

    def _unqueue(self, fut: asyncio.Future) -> None:
        with self._lock:
            for i, (f, _) in enumerate(self._waiters):
                if f is fut:
                    del self._waiters[i]
                    return

    async def _execute(self, job: Job, ticket: asyncio.Future | None) -> Any:
        if ticket is not None:
            try:
                await ticket
            except asyncio.CancelledError:
                if ticket.done() and not ticket.cancelled():
                    self._release()  # the slot had just been handed over: pass it on
                else:
                    ticket.cancel()
                    self._unqueue(ticket)
                raise
        flight = self._flights.get(job.key) if job.key is not None else None
        if flight is not None:
            flight.started = True
        t0 = time.perf_counter()
        try:
            result = await asyncio.get_running_loop().run_in_executor(self._pool, job.run)
        finally:
            self._release()
        with self._lock:
            self._costs.record(job.cost, time.perf_counter() - t0)
            self.completed += 1
        if isinstance(result, FollowUp):
            then, result = result.then, result.result
            if then.key not in self._flights:
                asyncio.ensure_future(self._background(then))
        if job.key is not None and job.cache and self.cache is not None:
            self.cache.put(job.key, result)
        return result

    async def _background(self, job: Job) -> None:
        """Run follow-up work nobody waits for yet; if the gate is full it is simply left (asked for, it runs)."""
        try:
            await self.submit(job)
        except Exception:  # noqa: BLE001 - a later request for the same result computes it and reports the error
            pass

    def _forget(self, key: Hashable, flight: _Flight) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]

    async def _wait(self, flight: _Flight, is_disconnected: Callable[[], Awaitable[bool]] | None) -> Any:
        task = flight.task
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=POLL_S if is_disconnected else None)
                if done:
                    return task.result()
                if is_disconnected is not None and await is_disconnected():
                    raise ClientGone("the client disconnected")
        except (ClientGone, asyncio.CancelledError):
            flight.waiting -= 1
            if flight.waiting <= 0 and not flight.started and not task.done():
                flight.dropped = True
                task.cancel()  # nobody wants it any more and it has not started: never computed
                with self._lock:
                    self.dropped += 1
            raise
