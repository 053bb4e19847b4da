"""A graceful stop: on SIGTERM (or Ctrl+C) the probes say "stopping" at once, the
running questions get ASKGATE_SHUTDOWN_GRACE_SECONDS to finish, and those still
running then are cut, stored as cancelled with what arrived, their quota settled.

uvicorn does the rest of a graceful stop itself: it stops accepting, closes idle
connections, waits for the running requests (up to its own timeout, which
`askgate serve` sets a little longer than the grace) and runs the app's lifespan
shutdown, where the ledger writes what the cut questions left behind.

The signal reaches the app through uvicorn's handler: the lifespan puts
`Stopping.handler` in front of the one uvicorn installed (askgate.app), in each
worker process. Under any other server (the tests' ASGI transport) nothing is
installed, and `Stopping.begin()` is called by hand.
"""

import asyncio
import logging
import signal
import threading
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any

logger = logging.getLogger("askgate.shutdown")

# What a question cut by a stop says, stored and sent to its client.
CUT_DETAIL = (
    "askgate was restarting: the answer was cut and the question stored as "
    "cancelled; ask again"
)
SIGNALS = (signal.SIGTERM, signal.SIGINT)

# The tasks cut by a stop, so that their handlers can tell that cancellation from
# a client leaving (askgate.disconnect) and answer it as CUT_DETAIL says.
_cut: "weakref.WeakSet[asyncio.Task[Any]]" = weakref.WeakSet()


def was_cut() -> bool:
    """Whether the current task is a question cut by a stop."""
    task = asyncio.current_task()
    return task is not None and task in _cut


def absorb_cut() -> bool:
    """In a handler of CancelledError: whether it is a stop's cut, and if so the
    cancellation is taken back, for the handler to answer the client."""
    task = asyncio.current_task()
    if task is None or task not in _cut:
        return False
    task.uncancel()
    return True


class Stopping:
    """The running questions of one process (each one's request task), and the
    stop: `begin()` starts the grace period, after which the rest are cut."""

    def __init__(self, grace: float, on_begin: Callable[[], None]) -> None:
        self.grace = grace
        self._on_begin = on_begin
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0  # when the grace runs out, once begun
        self._previous: dict[int, Any] = {}

    @property
    def begun(self) -> bool:
        return self._timer is not None

    def track(self) -> asyncio.Task[Any]:
        """Count the current task as a running question until `done(task)`."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._idle.clear()
        if self.begun and self._loop.time() >= self._timer_when:
            self._cut(task)  # started after the grace ran out (never accepted now)
        return task

    def done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        _cut.discard(task)  # a later cancel of the task (uvicorn's) is not ours
        if not self._tasks:
            self._idle.set()

    def begin(self) -> None:
        """From the event loop's thread: stop, once."""
        if self.begun:
            return
        self._on_begin()
        logger.info(
            "Stopping: %d question(s) running, %gs to finish",
            len(self._tasks),
            self.grace,
        )
        self._timer_when = self._loop.time() + self.grace
        self._timer = self._loop.call_at(self._timer_when, self._cut_all)

    def _cut_all(self) -> None:
        if self._tasks:
            logger.warning(
                "Cutting %d question(s) still running after %gs",
                len(self._tasks),
                self.grace,
            )
        for task in self._tasks:
            self._cut(task)

    def _cut(self, task: asyncio.Task[Any]) -> None:
        if task not in _cut:
            _cut.add(task)
            task.cancel()

    async def wait_idle(self, at_most: float) -> None:
        """Until the running questions have ended (and handed their writes to
        the ledger), `at_most` seconds."""
        try:
            async with asyncio.timeout(at_most):
                await self._idle.wait()
        except TimeoutError:
            logger.error("%d question(s) did not end in time", len(self._tasks))

    # Signals

    def install(self) -> None:
        """Run `begin()` on SIGTERM and SIGINT before the handler in place (the
        ASGI server's), when that is a Python function: under uvicorn."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in SIGNALS:
            previous = signal.getsignal(sig)
            if callable(previous):
                self._previous[sig] = previous
                signal.signal(sig, self._handler)

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            if signal.getsignal(sig) == self._handler:
                signal.signal(sig, previous)
        self._previous.clear()

    def _handler(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler runs between two bytecodes of the loop's thread:
        # the loop's own state is left alone, `begin` runs as a callback.
        self._loop.call_soon_threadsafe(self.begin)
        self._previous[sig](sig, frame)
