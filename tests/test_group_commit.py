"""Group commit: batches form under load, a bad item fails alone, and a write
outlives the request that submitted it."""

import asyncio
from collections.abc import Sequence

import pytest

from askgate.group_commit import GroupCommit, Outcome


class Recorder:
    """A write that doubles its items, refuses negative ones, and can be held."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.written: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def write(self, items: Sequence[int]) -> list[Outcome[int]]:
        self.batches.append(list(items))
        await self.gate.wait()
        if any(item < 0 for item in items):
            raise ValueError("negative")  # the whole transaction fails
        self.written.extend(items)
        return [item * 2 for item in items]


async def test_one_item_at_rest_is_written_at_once() -> None:
    recorder = Recorder()
    group: GroupCommit[int, int] = GroupCommit(recorder.write)

    assert await group.submit(3) == 6
    assert recorder.batches == [[3]]


async def test_items_arriving_during_a_write_share_the_next_one() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    group: GroupCommit[int, int] = GroupCommit(recorder.write)
    first = asyncio.create_task(group.submit(1))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(group.submit(n)) for n in range(2, 12)]
    await asyncio.sleep(0)
    recorder.gate.set()

    assert await first == 2
    assert await asyncio.gather(*rest) == [n * 2 for n in range(2, 12)]
    assert recorder.batches == [[1], list(range(2, 12))]


async def test_a_failing_item_fails_alone() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    group: GroupCommit[int, int] = GroupCommit(recorder.write)
    first = asyncio.create_task(group.submit(1))
    await asyncio.sleep(0)
    good = asyncio.create_task(group.submit(2))
    bad = asyncio.create_task(group.submit(-1))
    also_good = asyncio.create_task(group.submit(4))
    await asyncio.sleep(0)
    recorder.gate.set()

    assert await first == 2
    assert await good == 4
    assert await also_good == 8
    with pytest.raises(ValueError, match="negative"):
        await bad
    assert sorted(recorder.written) == [1, 2, 4]


async def test_a_cancelled_submitter_still_gets_its_write() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    group: GroupCommit[int, int] = GroupCommit(recorder.write)
    submitted = asyncio.create_task(group.submit(5))
    await asyncio.sleep(0)

    submitted.cancel()  # the client left while its write waited
    with pytest.raises(asyncio.CancelledError):
        await submitted
    recorder.gate.set()
    await group.drain()

    assert recorder.written == [5]


async def test_batches_are_bounded() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    group: GroupCommit[int, int] = GroupCommit(recorder.write, max_batch=4)
    tasks = [asyncio.create_task(group.submit(n)) for n in range(10)]
    await asyncio.sleep(0)
    recorder.gate.set()
    await asyncio.gather(*tasks)

    assert [len(batch) for batch in recorder.batches] == [4, 4, 2]
