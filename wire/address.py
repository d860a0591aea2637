"""The one transport-address type used across Pinhole."""

from __future__ import annotations

from typing import NamedTuple


class Address(NamedTuple):
    """An IP address and port; a plain ``(host, port)`` tuple on the wire.

    Being a tuple, it is accepted wherever asyncio or aioice take
    ``tuple[str, int]``.
    """

    host: str
    port: int

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"
