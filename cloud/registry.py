"""Registered media nodes, their control WebSockets, and leg allocation over them.

A node opens the control WebSocket itself; the cloud never connects out.
Missed heartbeats (``heartbeat_s × heartbeat_misses``) make a node unhealthy:
it leaves node lists and assignment until it heartbeats again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from wire.models import (
    AllocateLeg,
    Heartbeat,
    LegAllocated,
    LegEvent,
    NodeInfo,
    NodeToCloud,
    ReleaseLeg,
)

log = logging.getLogger(__name__)
_from_node: TypeAdapter[Heartbeat | LegAllocated | LegEvent] = TypeAdapter(NodeToCloud)


class NodeUnavailable(Exception):
    """The node has no control channel, or did not answer in time."""


@dataclass(slots=True)
class NodeState:
    info: NodeInfo
    capacity: int
    last_seen: float
    ws: web.WebSocketResponse | None = None
    pending: dict[str, asyncio.Future[LegAllocated]] = field(default_factory=dict)
    legs: int = 0
    malformed: int = 0


class NodeRegistry:
    def __init__(
        self,
        heartbeat_s: float,
        misses: int,
        on_leg_event: Callable[[str, LegEvent], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.heartbeat_s = heartbeat_s
        self.misses = misses
        self._nodes: dict[str, NodeState] = {}
        self._clock = clock
        self._on_leg_event = on_leg_event

    def register(self, info: NodeInfo, capacity: int) -> None:
        old = self._nodes.get(info.id)
        state = NodeState(info=info, capacity=capacity, last_seen=self._clock())
        if old is not None:
            state.ws, state.pending = old.ws, old.pending
        self._nodes[info.id] = state

    def get(self, node_id: str) -> NodeState | None:
        return self._nodes.get(node_id)

    def nodes(self) -> list[NodeInfo]:
        """Every registered node with its current health and load."""
        now = self._clock()
        out = []
        for state in self._nodes.values():
            healthy = (
                state.ws is not None
                and now - state.last_seen <= self.heartbeat_s * self.misses
            )
            load = min(1.0, state.legs / state.capacity)
            out.append(state.info.model_copy(update={"healthy": healthy, "load": load}))
        return out

    async def serve_control(self, node_id: str, ws: web.WebSocketResponse) -> None:
        """Run one node's control channel until it closes."""
        state = self._nodes[node_id]
        if state.ws is not None and not state.ws.closed:
            await state.ws.close(message=b"replaced by a newer control connection")
        state.ws = ws
        state.last_seen = self._clock()
        log.info("node %s control channel up", node_id)
        try:
            async for msg in ws:
                if msg.type != web.WSMsgType.TEXT:
                    continue
                try:
                    message = _from_node.validate_json(msg.data)
                except ValidationError:
                    state.malformed += 1
                    continue
                state.last_seen = self._clock()
                if isinstance(message, Heartbeat):
                    state.legs = message.legs
                elif isinstance(message, LegAllocated):
                    future = state.pending.pop(message.request_id, None)
                    if future is not None and not future.done():
                        future.set_result(message)
                elif self._on_leg_event is not None:
                    self._on_leg_event(node_id, message)
        finally:
            if state.ws is ws:
                state.ws = None
            for future in state.pending.values():
                if not future.done():
                    future.set_exception(NodeUnavailable(f"node {node_id} disconnected"))
            state.pending.clear()
            log.info("node %s control channel down", node_id)

    async def allocate(self, node_id: str, command: AllocateLeg, timeout_s: float) -> None:
        """Ask the node for a leg; return once it has it."""
        state = self._nodes.get(node_id)
        if state is None or state.ws is None or state.ws.closed:
            raise NodeUnavailable(f"node {node_id} has no control channel")
        future: asyncio.Future[LegAllocated] = asyncio.get_running_loop().create_future()
        state.pending[command.request_id] = future
        await state.ws.send_str(command.model_dump_json())
        try:
            answer = await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            state.pending.pop(command.request_id, None)
            raise NodeUnavailable(f"node {node_id} did not allocate the leg in time") from None
        if not answer.ok:
            raise NodeUnavailable(f"node {node_id} refused the leg: {answer.detail}")

    async def release(self, node_id: str, leg_id: str) -> None:
        await self.send(node_id, ReleaseLeg(leg_id=leg_id))

    async def send(self, node_id: str, command: BaseModel) -> bool:
        """A command that needs no answer (release, open/close cascade); False if not sent."""
        state = self._nodes.get(node_id)
        if state is None or state.ws is None or state.ws.closed:
            return False
        await state.ws.send_str(command.model_dump_json())
        return True

    async def close(self) -> None:
        for state in self._nodes.values():
            if state.ws is not None and not state.ws.closed:
                await state.ws.close()
