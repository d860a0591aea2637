"""The cloud's state object, shared by every route through ``web.AppKey``.

It holds the parts; what each does is the part's own: a meeting's lock is the store's
(``Store.meeting_lock``), the nodes an org sees the registry's (``NodeRegistry.visible``),
a token's device and the meetings it may use :mod:`cloud.identity`'s, a line of the
console's history the history's (``History.note``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from cloud.history import History, MemoryHistory
from cloud.identity import Org, TokenSigner
from cloud.metrics import CloudMetrics
from cloud.registry import NodeRegistry
from cloud.settings import CloudSettings
from cloud.store import Store
from edge.admission import Admission
from wire.models import CallMetrics


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

    async def device_name(self, device_id: str) -> str:
        """A device's name for the history; its id when the record is gone."""
        device = await self.store.get_device(device_id)
        return device.name if device is not None else device_id


CLOUD: web.AppKey[Cloud] = web.AppKey("cloud", Cloud)
