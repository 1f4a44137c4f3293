"""The app's background work (a SIGHUP reload, retiring a replaced session store), owned.

asyncio keeps only weak references to tasks, so a task nobody holds can be collected
mid-flight; and work left pending at shutdown would run against closed clients. Tasks holds
every task and timer until it is done, and `close` ends them when the app shuts down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger("proxy")


class Tasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timers: dict[asyncio.TimerHandle, Callable[[], Awaitable[Any]]] = {}

    def spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def later(self, delay: float, work: Callable[[], Awaitable[Any]]) -> None:
        """Run `work()` in `delay` seconds, or at shutdown if that comes first (due work,
        such as closing a retired store's connections, is never skipped)."""
        def fire() -> None:
            self._timers.pop(handle, None)
            self.spawn(_run(work))

        handle = asyncio.get_running_loop().call_later(delay, fire)
        self._timers[handle] = work

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed: %r", task.exception())

    async def close(self) -> None:
        """Shutdown: cancel what is running (a reload must not swap state into an app that
        is closing), then run the work that was due later, now."""
        running = list(self._tasks)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        timers, self._timers = self._timers, {}
        for handle, work in timers.items():
            handle.cancel()
            try:
                await work()
            except Exception as exc:  # shutdown goes on: the rest still gets closed
                log.error("background work failed at shutdown: %r", exc)

    def __len__(self) -> int:
        return len(self._tasks) + len(self._timers)


async def _run(work: Callable[[], Awaitable[Any]]) -> None:
    await work()
