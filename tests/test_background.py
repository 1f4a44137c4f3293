"""proxy/background.Tasks: the app's background work is held until done and ended at
shutdown (a real event loop; nothing mocked)."""

from __future__ import annotations

import asyncio

from proxy.background import Tasks


async def test_a_spawned_task_is_held_until_it_is_done() -> None:
    tasks = Tasks()
    release = asyncio.Event()
    done: list[str] = []

    async def work() -> None:
        await release.wait()
        done.append("ran")

    tasks.spawn(work())  # the caller keeps no reference: Tasks must
    await asyncio.sleep(0)
    assert len(tasks) == 1
    release.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert done == ["ran"] and len(tasks) == 0


async def test_close_cancels_what_is_still_running() -> None:
    tasks = Tasks()
    started = asyncio.Event()
    outcome: list[str] = []

    async def endless() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    task = tasks.spawn(endless())
    await started.wait()
    await asyncio.wait_for(tasks.close(), timeout=5)
    assert task.cancelled() and outcome == ["cancelled"] and len(tasks) == 0


async def test_work_due_later_runs_at_its_time() -> None:
    tasks = Tasks()
    ran = asyncio.Event()

    async def work() -> None:
        ran.set()

    tasks.later(0.01, work)
    assert len(tasks) == 1
    await asyncio.wait_for(ran.wait(), timeout=5)
    for _ in range(10):
        await asyncio.sleep(0)
    assert len(tasks) == 0


async def test_work_due_later_runs_at_shutdown_instead_of_being_dropped() -> None:
    tasks = Tasks()
    ran: list[str] = []

    async def work() -> None:
        ran.append("closed")

    tasks.later(3600, work)
    await tasks.close()
    assert ran == ["closed"] and len(tasks) == 0
    await asyncio.sleep(0)
    assert ran == ["closed"]  # the timer is gone: the work does not run a second time


async def test_a_failing_task_is_logged_not_lost(caplog: object) -> None:
    import logging

    import pytest

    assert isinstance(caplog, pytest.LogCaptureFixture)
    tasks = Tasks()

    async def broken() -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="proxy"):
        task = tasks.spawn(broken())
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)
    assert "background task failed" in caplog.text and len(tasks) == 0
