"""The visitor-ID entropy pool (ingestion/identity.py): os.urandom read in blocks, never the same
bytes twice, in one process or across a fork."""

from __future__ import annotations

import os

from ingestion.identity import _Entropy


def test_slices_never_repeat_across_refills() -> None:
    # Given a pool, when far more than one block is taken in visitor-sized slices
    pool = _Entropy()
    slices = [pool.take(40) for _ in range(1000)]  # ~10 blocks of 4 KB

    # Then every slice is full-length and unique
    assert all(len(piece) == 40 for piece in slices)
    assert len(set(slices)) == len(slices)


def test_a_forked_child_does_not_repeat_its_parents_bytes() -> None:
    # Given a pool with most of a block left when the process forks
    pool = _Entropy()
    pool.take(40)
    reader, writer = os.pipe()

    # When the child and the parent each take their next slice
    pid = os.fork()
    if pid == 0:  # the child
        os.write(writer, pool.take(40))
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(reader, 40)
    parent = pool.take(40)
    os.close(reader)
    os.close(writer)

    # Then they differ: the child drew fresh bytes instead of the parent's next slice
    assert len(child) == 40
    assert child != parent
