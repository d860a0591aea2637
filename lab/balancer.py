"""A TCP balancer in front of cloud replicas: ``python -m lab.balancer LISTEN BACKEND...``.

What a load balancer in front of a replicated cloud does, at layer 4: each
accepted connection goes to the next backend in turn; a backend that refuses
the connection is skipped (the next one is tried), so killing a replica only
cuts the connections it held. TLS passes through untouched: the replicas
present the cloud's certificate, the balancer never sees a key.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import uvloop

from wire.address import Address


class Balancer:
    def __init__(self, backends: Sequence[Address], connect_timeout_s: float = 1.0) -> None:
        if not backends:
            raise ValueError("a balancer needs at least one backend")
        self.backends = list(backends)
        self.connect_timeout_s = connect_timeout_s
        self._next = 0
        self.refused = 0

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in range(len(self.backends)):
            backend = self.backends[self._next % len(self.backends)]
            self._next += 1
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    return await asyncio.open_connection(backend.host, backend.port)
            except (OSError, TimeoutError):
                self.refused += 1
        return None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await self._connect()
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def _serve(listen: Address, backends: list[Address], state_file: Path | None) -> None:
    balancer = Balancer(backends)
    server = await asyncio.start_server(balancer.handle, listen.host, listen.port)
    if state_file is not None:
        state_file.write_text(json.dumps({"listen": str(listen),
                                          "backends": [str(b) for b in backends]}))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def _address(text: str) -> Address:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: want HOST:PORT")
    return Address(host, int(port))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.balancer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("listen", type=_address, help="HOST:PORT to accept connections on")
    p.add_argument("backends", type=_address, nargs="+", help="HOST:PORT of each replica")
    p.add_argument("--state-file", type=Path, default=None,
                   help="write {listen, backends} here as JSON once listening")
    args = p.parse_args(argv)
    try:
        uvloop.run(_serve(args.listen, args.backends, args.state_file))
    except OSError as exc:
        print(f"lab.balancer: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
