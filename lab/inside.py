"""An asyncio event loop on a thread of its own, optionally inside a network namespace.

A network namespace belongs to a thread, not to a process: ``setns(2)`` with
``CLONE_NEWNET`` moves the calling thread alone, and every socket that thread (or a thread
it starts, such as its loop's executor) opens afterwards lives there. So a test process
can drive a client *inside* the firewall lab's enterprise network, and read the cloud
inside its internet namespace, without leaving its own namespace. Entering one needs
``CAP_SYS_ADMIN`` (root); without a namespace the loop runs where the process is.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import os
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final, TypeVar

T = TypeVar("T")
CLONE_NEWNET: Final = 0x40000000  # <sched.h>
NETNS_DIR: Final = Path("/run/netns")  # where ``ip netns add`` keeps its namespaces


class InsideError(Exception):
    """The thread could not enter the namespace; the message says why."""


def enter_namespace(name: str) -> None:
    """Move the calling thread into the network namespace ``ip netns`` calls ``name``."""
    try:
        fd = os.open(NETNS_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise InsideError(f"no network namespace {name!r} to enter ({exc.strerror}); "
                          "'ip netns list' shows those there are") from None
    try:
        setns = getattr(os, "setns", None)  # Python 3.12 has it
        if setns is not None:
            try:
                setns(fd, CLONE_NEWNET)
            except OSError as exc:
                raise InsideError(f"setns into {name}: {exc.strerror} (needs root)") from None
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise InsideError(f"setns into {name}: {os.strerror(code)} (needs root)")
    finally:
        os.close(fd)


class LoopThread:
    """An event loop running on its own thread (inside ``namespace`` when given) until
    :meth:`close`; :meth:`run` hands it a coroutine and waits for the result."""

    def __init__(self, namespace: str | None = None, name: str = "pinhole-loop") -> None:
        self.namespace = namespace
        self.loop = asyncio.new_event_loop()
        self._started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self._started.result(timeout=30)  # raises what entering the namespace raised

    def _main(self) -> None:
        try:
            if self.namespace is not None:
                enter_namespace(self.namespace)
            asyncio.set_event_loop(self.loop)
        except BaseException as exc:
            self._started.set_exception(exc)
            return
        self._started.set_result(None)
        self.loop.run_forever()
        # closed: cancel what is left, let it finish, then close the loop
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()

    def run(self, make: Callable[[], Awaitable[T]], timeout_s: float | None = None) -> T:
        """Run ``make()`` on the loop; its result, or what it raised. On a timeout (or a
        Ctrl-C while waiting) the coroutine is cancelled."""

        async def wrapped() -> T:
            return await make()

        future = asyncio.run_coroutine_threadsafe(wrapped(), self.loop)
        try:
            return future.result(timeout=timeout_s)
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        """Stop the loop (its tasks cancelled) and wait for the thread."""
        if self._thread.is_alive() and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=30)
