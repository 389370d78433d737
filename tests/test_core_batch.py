"""The core's group-commit helper: batch sizes, per-item results, failures."""

from __future__ import annotations

import asyncio

import pytest

from messenger_core.batch import Batcher


class Recorder:
    """A flush that records the batches it got and answers each item doubled (or fails on demand)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def flush(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        await self.release.wait()
        if -1 in items:
            raise ValueError("the whole batch fails")
        return [ValueError(f"item {item}") if item == 13 else item * 2 for item in items]


async def test_an_idle_batcher_flushes_at_once_and_later_items_wait_for_the_next_flush() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.flush, max_size=3)
    assert await batcher.submit(1) == 2
    assert recorder.batches == [[1]]
    recorder.release.clear()  # the next flush hangs until released: items pile up behind it
    first = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(batcher.submit(n)) for n in range(3, 8)]
    recorder.release.set()
    assert await first == 4
    assert [await task for task in rest] == [6, 8, 10, 12, 14]
    assert recorder.batches == [[1], [2], [3, 4, 5], [6, 7]]  # at most max_size, in arrival order
    assert (batcher.flushes, batcher.items) == (4, 7)


async def test_a_failed_flush_fails_its_items_only_and_an_exception_result_fails_one() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.flush, max_size=10)
    results = await asyncio.gather(*(batcher.submit(n) for n in (1, -1, 2)), return_exceptions=True)
    assert [type(r) for r in results] == [ValueError] * 3  # one flush of the three: all fail
    results = await asyncio.gather(*(batcher.submit(n) for n in (4, 13, 5)), return_exceptions=True)
    assert results[0] == 8 and results[2] == 10
    assert isinstance(results[1], ValueError) and str(results[1]) == "item 13"


async def test_a_flush_must_answer_every_item() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]
    batcher = Batcher(short)
    with pytest.raises(RuntimeError, match="1 result"):
        await asyncio.gather(batcher.submit(1), batcher.submit(2))
    with pytest.raises(ValueError):
        Batcher(short, max_size=0)


async def test_an_item_submitted_as_the_last_flush_ends_is_flushed_too() -> None:
    """A caller woken by its result runs before the finished flush's task is forgotten; what it submits at once
    must still start a flush (it used to wait for the next item from elsewhere, forever in a quiet process)."""
    recorder = Recorder()
    batcher = Batcher(recorder.flush, max_size=3)

    async def twice() -> int:
        await batcher.submit(1)
        return await batcher.submit(2)  # in the very step that got the first result
    assert await asyncio.wait_for(twice(), 5) == 4
    assert recorder.batches == [[1], [2]]
