"""``async for batch in watch``: batches waited for in the running asyncio
loop through the watch's fd, with no thread.

Each wait registers a reader on a duplicate of the watch's fd and removes
it before the next batch is taken, so nothing is registered between
batches, and a watch closed meanwhile (from a coroutine or another thread)
never leaves the loop polling a closed or reused fd number: the duplicate
keeps the eventfd open until the wait ends, and closing the watch makes it
readable, which ends the wait (and then the iteration).
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, List

from ._node import HeadcountError, Status

if TYPE_CHECKING:  # pragma: no cover
    from ._native import Change, Watch


class Batches:
    """The async iterator of ``async for batch in watch``: each
    ``__anext__`` returns the next non-empty batch, waiting in the running
    loop; it raises ``StopAsyncIteration`` once the watch or its node is
    closed. A cancelled ``__anext__`` (``asyncio.wait_for`` timing out)
    loses nothing and leaves the iterator usable."""

    __slots__ = ("_watch",)

    def __init__(self, watch: "Watch") -> None:
        self._watch = watch

    def __aiter__(self) -> "Batches":
        return self

    async def __anext__(self) -> List["Change"]:
        loop = asyncio.get_running_loop()
        while True:
            try:
                batch = self._watch.next(0)
            except HeadcountError as e:
                if e.status == Status.CLOSED:
                    raise StopAsyncIteration from None
                raise
            if batch:
                return batch
            await _readable(loop, self._watch)


async def _readable(loop: asyncio.AbstractEventLoop, watch: "Watch") -> None:
    """Returns once the watch's fd polls readable (changes pending, or the
    watch or node closed)."""
    try:
        fd = os.dup(watch.fileno())
    except (HeadcountError, OSError):
        return  # closed meanwhile: the caller's next() says so
    try:
        if watch.closed:
            # Closed between fileno() and dup(): `fd` may be another file.
            return
        ready = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, wake)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
    finally:
        os.close(fd)
