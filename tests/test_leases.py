"""The in-process lease store cannot grow without bound: leases of keys never seen
again (an address that tried once) are swept once they have expired.

Through the store itself: no HTTP response shows the store's size."""

import asyncio

from askgate.leases import MIN_SWEEP_KEYS, MemoryLeases


async def test_expired_leases_of_keys_never_seen_again_are_swept() -> None:
    leases = MemoryLeases()
    for n in range(MIN_SWEEP_KEYS):
        assert (await leases.acquire(f"once-{n}", limit=1, ttl=0.001)).lease
    await asyncio.sleep(0.01)  # every one of them has expired

    for n in range(MIN_SWEEP_KEYS * 3):
        assert (await leases.acquire(f"later-{n}", limit=1, ttl=60)).lease

    held = leases._held
    assert not any(key.startswith("once-") for key in held)
    assert len(held) == MIN_SWEEP_KEYS * 3


async def test_a_refusal_says_when_the_oldest_lease_expires() -> None:
    leases = MemoryLeases()
    first = await leases.acquire("k", limit=2, ttl=30)
    await leases.acquire("k", limit=2, ttl=60)

    refused = await leases.acquire("k", limit=2, ttl=60)

    assert refused.lease is None
    assert 0 < refused.wait <= 30
    assert refused.retry_after() == 30
    assert first.lease is not None
    await leases.release("k", first.lease)
    assert (await leases.acquire("k", limit=2, ttl=60)).lease is not None
