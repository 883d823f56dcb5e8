"""The compiled loops' buffer pool (csrc/loops.cpp ``BufferPool``, reached through
``ops.empty``): a large buffer comes back at the next request of its size once nothing holds it,
and a full pool makes room by dropping the free buffer handed out longest ago, never one that
the next requests of a training step will ask for again."""

from __future__ import annotations

import threading

import pytest
import torch

from rnnflow.recurrence import _ext

ENTRIES = 16  # BufferPool::kMaxEntries
MIB = 1 << 18  # float32 elements in 1 MiB, BufferPool::kMinBytes


@pytest.fixture
def ops():
    ok, reason = _ext.status()
    if not ok:
        pytest.skip(f"compiled loops unavailable: {reason}")
    return _ext.loops()


def in_fresh_thread(fn):
    """``fn()`` on a new thread: the pool is per thread, so it starts empty there."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(fn()))
    thread.start()
    thread.join()
    return result[0]


def test_a_free_buffer_is_handed_out_again(ops):
    def run():
        a = ops.empty([2, MIB], torch.float32)
        address = a.data_ptr()
        again = ops.empty([MIB, 2], torch.float32)  # a is held: a fresh one
        fresh = again.data_ptr() != address
        del a, again
        return fresh, ops.empty([2 * MIB], torch.float32).data_ptr() == address

    assert in_fresh_thread(run) == (True, True)


def test_a_full_pool_drops_the_least_recently_used_free_buffer(ops):
    """16 entries: X, Y, S, then 13 held. X and Y are asked for again (a training step's
    buffers), S is not; a new size Z must then replace S, so that X still comes back. (Dropping
    the first free entry instead replaced X, whose next request replaced Y, and so on: every
    step page-faulted all its buffers in anew.)"""

    def size(i):
        return [MIB + 1024 * i]

    def run():
        x, y, s = (ops.empty(size(i), torch.float32) for i in range(3))
        held = [ops.empty(size(3 + i), torch.float32) for i in range(ENTRIES - 3)]
        x_address, y_address = x.data_ptr(), y.data_ptr()
        del x, y, s
        x, y = ops.empty(size(0), torch.float32), ops.empty(size(1), torch.float32)
        reused = (x.data_ptr(), y.data_ptr()) == (x_address, y_address)
        del x, y
        z = ops.empty(size(99), torch.float32)
        x, y = ops.empty(size(0), torch.float32), ops.empty(size(1), torch.float32)
        kept = (x.data_ptr(), y.data_ptr()) == (x_address, y_address)
        del z, held
        return reused, kept

    assert in_fresh_thread(run) == (True, True)
