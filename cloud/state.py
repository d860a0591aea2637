"""The cloud's state object, shared by every route through ``web.AppKey``."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from aiohttp import web

from cloud.errors import IdentityError
from cloud.history import History, HistoryEvent, Kind, MemoryHistory
from cloud.identity import Claims, Org, TokenSigner
from cloud.metrics import CloudMetrics
from cloud.registry import NodeRegistry
from cloud.settings import CloudSettings
from cloud.store import DeviceRecord, Store
from edge.admission import Admission
from wire.models import CallMetrics, NodeInfo


@dataclass(slots=True)
class Cloud:
    settings: CloudSettings
    store: Store
    registry: NodeRegistry
    signer: TokenSigner
    orgs: dict[str, Org]
    clock: Callable[[], float] = time.time
    metrics: CloudMetrics = field(default_factory=CloudMetrics)
    legs: dict[str, tuple[str, str]] = field(default_factory=dict)  # leg -> meeting, participant
    connections: Admission = field(default_factory=lambda: Admission(0, 0))
    events_open: Counter[str] = field(default_factory=Counter)  # device -> events WebSockets
    live: dict[str, CallMetrics] = field(default_factory=dict)  # participant -> in-call quality
    history: History = field(default_factory=MemoryHistory)  # the console's event ring

    def note(self, kind: Kind, text: str, *, meeting: str | None = None,
             participant: str | None = None, device: str | None = None,
             node: str | None = None, to_node: str | None = None,
             gap_s: float | None = None) -> None:
        """One line in the console's event history (never waits, never raises)."""
        self.history.record(HistoryEvent(
            at=self.clock(), kind=kind, text=text, meeting=meeting, participant=participant,
            device=device, node=node, to_node=to_node,
            gap_s=None if gap_s is None else round(gap_s, 2)))

    def visible_nodes(self, org: str, *, healthy_only: bool = True) -> list[NodeInfo]:
        """All cloud nodes and this org's hybrid nodes (docs/design.md "Cloud API":
        GET /v1/nodes)."""
        return [
            n
            for n in self.registry.nodes()
            if (n.kind == "cloud" or n.org == org) and (n.healthy or not healthy_only)
        ]

    def meeting_lock(self, meeting_id: str, device_id: str | None = None
                     ) -> AbstractAsyncContextManager[None]:
        """Serialises changes to one meeting, across replicas with the Redis store;
        ``device_id``: the device acting (see ``Store.meeting_lock``)."""
        return self.store.meeting_lock(meeting_id, device_id)

    async def authenticate(self, token: str) -> tuple[Claims, DeviceRecord]:
        """A device's claims and record; ``IdentityError`` when bad, expired or revoked."""
        claims = self.signer.verify(token, self.clock())
        return claims, await self.current(claims)

    async def device_name(self, device_id: str) -> str:
        """A device's name for the history; its id when the record is gone."""
        device = await self.store.get_device(device_id)
        return device.name if device is not None else device_id

    async def current(self, claims: Claims) -> DeviceRecord:
        """The device of verified ``claims``; ``IdentityError`` when a newer registration
        revoked them."""
        device = await self.store.get_device(claims.device_id)
        if device is None or device.generation != claims.generation:
            raise IdentityError("token revoked by a newer registration; register again")
        return device


CLOUD: web.AppKey[Cloud] = web.AppKey("cloud", Cloud)
