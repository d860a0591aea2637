"""Registered media nodes, their control WebSockets, and leg allocation over them.

A node opens the control WebSocket itself; the cloud never connects out.
Missed heartbeats (``heartbeat_s × heartbeat_misses``) or a missed WebSocket
pong (the ping deadline) make a node unhealthy: it leaves node lists and
assignment until it heartbeats again. With several replicas, the replica
holding the channel withdraws the node's announcement the moment the channel
closes, so no replica reads a dead node back as a healthy remote one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, get_args

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from cloud.errors import NodeUnavailable
from cloud.node_bus import NodeBus
from cloud.redis_errors import raise_if_cancelling
from wire.models import (
    AllocateLeg,
    CloseCascade,
    ControlRefused,
    Heartbeat,
    LegAllocated,
    LegCounters,
    LegEvent,
    NodeInfo,
    NodeToCloud,
    OpenCascade,
    PlaneKind,
    ReleaseLeg,
)

log = logging.getLogger(__name__)
_from_node: TypeAdapter[Heartbeat | LegAllocated | LegEvent | ControlRefused] = TypeAdapter(
    NodeToCloud)


class LegEventSink(Protocol):
    """Where the registry hands what nodes report about their legs
    (:class:`cloud.leg_events.LegEventQueue`); it must not wait."""

    def put(self, node_id: str, event: LegEvent) -> None: ...


@dataclass(slots=True)
class NodeState:
    info: NodeInfo
    capacity: int
    last_seen: float
    plane: PlaneKind | None = None  # the data plane it said it relays on
    ws: web.WebSocketResponse | None = None
    pending: dict[str, asyncio.Future[LegAllocated]] = field(default_factory=dict)
    legs: int = 0
    malformed: int = 0
    stats: dict[str, LegCounters] = field(default_factory=dict)  # the last heartbeat's, per leg
    refused: int = 0  # commands the node answered with control_refused


class NodeRegistry:
    def __init__(
        self,
        heartbeat_s: float,
        misses: int,
        leg_events: LegEventSink | None = None,
        clock: Callable[[], float] = time.monotonic,
        bus: NodeBus | None = None,
    ) -> None:
        self.heartbeat_s = heartbeat_s
        self.misses = misses
        self._nodes: dict[str, NodeState] = {}
        self._clock = clock
        self._leg_events = leg_events
        self.bus = bus  # with several replicas (the Redis store's): nodes shared through it
        self._remote: dict[str, NodeInfo] = {}  # nodes held by other replicas
        self._forwarders: dict[str, asyncio.Task[None]] = {}
        self.synced = False  # learned the other replicas' nodes at least once (with a bus)

    def register(self, info: NodeInfo, capacity: int, plane: PlaneKind | None = None) -> None:
        old = self._nodes.get(info.id)
        state = NodeState(info=info, capacity=capacity, last_seen=self._clock(), plane=plane)
        if old is not None:
            state.ws, state.pending = old.ws, old.pending
        self._nodes[info.id] = state

    def get(self, node_id: str) -> NodeState | None:
        """A node registered with this replica."""
        return self._nodes.get(node_id)

    def heartbeat_age(self, node_id: str) -> float | None:
        """Seconds since this replica last heard from the node (None: held elsewhere)."""
        state = self._nodes.get(node_id)
        return None if state is None else max(0.0, self._clock() - state.last_seen)

    async def share(self, node_id: str) -> None:
        """Keep the registration where every replica finds it (with a bus)."""
        state = self._nodes[node_id]
        if self.bus is not None:
            await self.bus.remember(node_id, {"info": state.info.model_dump(mode="json"),
                                              "capacity": state.capacity,
                                              "plane": state.plane})

    async def find(self, node_id: str) -> NodeState | None:
        """A node registered here or, with a bus, with any replica (behind a balancer
        its control channel may reach another replica than its registration did)."""
        state = self._nodes.get(node_id)
        if state is None and self.bus is not None:
            shared = await self.bus.recall(node_id)
            if shared is not None:
                plane = shared.get("plane")
                self.register(NodeInfo.model_validate(shared["info"]), int(shared["capacity"]),
                              plane if plane in get_args(PlaneKind) else None)
                state = self._nodes.get(node_id)
        return state

    def info(self, node_id: str) -> NodeInfo | None:
        """A node registered with this replica or, with a bus, with another one."""
        state = self._nodes.get(node_id)
        return state.info if state is not None else self._remote.get(node_id)

    def _local(self) -> list[NodeInfo]:
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

    def nodes(self) -> list[NodeInfo]:
        """Every registered node with its current health and load (all replicas')."""
        local = self._local()
        healthy_here = {n.id for n in local if n.healthy}
        remote = [n for n in self._remote.values() if n.id not in healthy_here]
        elsewhere = {n.id for n in remote}
        return [n for n in local if n.healthy or n.id not in elsewhere] + remote

    def visible(self, org: str, *, healthy_only: bool = True) -> list[NodeInfo]:
        """What ``org`` sees: all cloud nodes and its own hybrid nodes (docs/design.md
        "Cloud API": GET /v1/nodes)."""
        return [n for n in self.nodes()
                if (n.kind == "cloud" or n.org == org) and (n.healthy or not healthy_only)]

    async def sync(self) -> None:
        """Announce this replica's connected nodes; learn the others' (with a bus)."""
        if self.bus is None:
            return
        mine = [n for n in self._local() if self._nodes[n.id].ws is not None]
        # twice the health deadline: a node whose replica died reconnects to another
        # replica (through the balancer) before its last announcement runs out
        await self.bus.announce(
            ({"info": n.model_dump(mode="json")} for n in mine),
            ttl_s=self.heartbeat_s * self.misses * 2)
        for closed in [n.id for n in mine if self._nodes[n.id].ws is None]:
            await self.bus.withdraw(closed)  # it closed while we announced it
        local_ids = {n.id for n in mine}
        self._remote = {
            entry["info"]["id"]: NodeInfo.model_validate(entry["info"])
            for entry in await self.bus.snapshot()
            if entry["info"]["id"] not in local_ids
        }
        self.synced = True

    async def run_sync(self, max_backoff_s: float = 30.0) -> None:
        """Until cancelled: sync every half heartbeat; a failing store backs off. One line
        when the sync pauses and one when it resumes (the readiness watch logs the outage's
        steps): no traceback every 2.5 s while Redis is down."""
        period = max(0.1, self.heartbeat_s / 2)
        backoff, paused = period, False
        while True:
            try:
                await self.sync()
            except Exception as exc:  # a store outage must not end the loop
                raise_if_cancelling()
                backoff = min(backoff * 2, max_backoff_s)
                if not paused:
                    log.warning("node registry sync paused: %s", exc or type(exc).__name__)
                paused = True
            else:
                if paused:
                    log.info("node registry sync resumed")
                backoff, paused = period, False
            raise_if_cancelling()  # the client may have swallowed the cancel outright
            await asyncio.sleep(backoff)

    async def serve_control(self, node_id: str, ws: web.WebSocketResponse) -> None:
        """Run one node's control channel until it closes."""
        state = self._nodes[node_id]
        if state.ws is not None and not state.ws.closed:
            await state.ws.close(message=b"replaced by a newer control connection")
        state.ws = ws
        state.last_seen = self._clock()
        log.info("node %s control channel up", node_id)
        forwarder = self._forward(node_id, ws) if self.bus is not None else None
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
                    state.stats = message.stats
                elif isinstance(message, LegAllocated):
                    future = state.pending.pop(message.request_id, None)
                    if future is not None and not future.done():
                        future.set_result(message)
                    elif future is None and self.bus is not None:  # asked by another replica
                        await self.bus.reply(message.request_id, msg.data)
                elif isinstance(message, ControlRefused):
                    state.refused += 1
                    log.warning("node %s refused a %s command: %s", node_id, message.command,
                                message.detail)
                    waiting = state.pending.pop(message.request_id or "", None)
                    if waiting is not None and not waiting.done():
                        waiting.set_result(LegAllocated(
                            request_id=message.request_id or "", leg_id="refused", ok=False,
                            detail=message.detail))
                elif self._leg_events is not None:
                    self._leg_events.put(node_id, message)
        finally:
            if forwarder is not None:
                forwarder.cancel()
            if state.ws is ws:
                state.ws = None
                self._remote.pop(node_id, None)
                if self.bus is not None:
                    try:
                        await self.bus.withdraw(node_id)
                    except Exception as exc:  # the announcement still expires by itself
                        raise_if_cancelling()
                        log.warning("withdrawing node %s failed: %r", node_id, exc)
            for future in state.pending.values():
                if not future.done():
                    future.set_exception(NodeUnavailable(f"node {node_id} disconnected"))
            state.pending.clear()
            log.info("node %s control channel down", node_id)

    def _forward(self, node_id: str, ws: web.WebSocketResponse) -> asyncio.Task[None]:
        """Commands other replicas publish for this node go down its WebSocket."""
        assert self.bus is not None
        bus = self.bus

        async def forward() -> None:
            async for text in bus.commands(node_id):
                if not ws.closed:
                    await ws.send_str(text)

        return asyncio.create_task(forward())

    async def allocate(self, node_id: str, command: AllocateLeg, timeout_s: float) -> None:
        """Ask the node for a leg; return once it has it.

        With several replicas a node whose replica just died is reconnecting to
        another one: the request is tried again until ``timeout_s``.
        """
        deadline = self._clock() + timeout_s
        while True:
            state = self._nodes.get(node_id)
            local = state is not None and state.ws is not None and not state.ws.closed
            if local or self.bus is None or node_id not in self._remote:
                return await self._allocate_here(node_id, command, timeout_s)
            left = deadline - self._clock()
            text = await self.bus.request(node_id, command.model_dump_json(),
                                          command.request_id, max(0.1, left))
            if text is not None:
                answer = LegAllocated.model_validate_json(text)
                if not answer.ok:
                    raise NodeUnavailable(f"node {node_id} refused the leg: {answer.detail}")
                return None
            if self._clock() + 0.2 >= deadline:
                raise NodeUnavailable(f"node {node_id} did not allocate the leg in time")
            await asyncio.sleep(0.2)  # held by no replica right now: it is reconnecting

    async def _allocate_here(self, node_id: str, command: AllocateLeg, timeout_s: float) -> None:
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
        # counted now, not at the next heartbeat: joins in between see the load (overflow)
        state.legs += 1

    def refused(self) -> int:
        """Commands this replica's nodes answered with ``control_refused``."""
        return sum(state.refused for state in self._nodes.values())

    async def release(self, node_id: str, leg_id: str) -> None:
        state = self._nodes.get(node_id)
        if await self.send(node_id, ReleaseLeg(leg_id=leg_id)) and state is not None:
            state.legs = max(0, state.legs - 1)

    async def open_cascade(self, node_id: str, command: OpenCascade) -> bool:
        """Tell ``node_id`` to dial a cascade; its outbound leg counts against the node's
        capacity from now on, as a leg it allocates does (docs/design.md "Assignment"):
        False if not sent."""
        state = self._nodes.get(node_id)
        sent = await self.send(node_id, command)
        if sent and state is not None:
            state.legs += 1
        return sent

    async def close_cascade(self, node_id: str, command: CloseCascade) -> None:
        """Tell ``node_id`` to close a cascade it dialled; its leg no longer counts."""
        state = self._nodes.get(node_id)
        if await self.send(node_id, command) and state is not None:
            state.legs = max(0, state.legs - 1)

    async def send(self, node_id: str, command: BaseModel) -> bool:
        """A command that needs no answer (release, open/close cascade); False if not sent."""
        state = self._nodes.get(node_id)
        if state is None or state.ws is None or state.ws.closed:
            if self.bus is not None and node_id in self._remote:
                return await self.bus.command(node_id, command.model_dump_json())
            return False
        await state.ws.send_str(command.model_dump_json())
        return True

    async def close(self) -> None:
        for state in self._nodes.values():
            if state.ws is not None and not state.ws.closed:
                await state.ws.close()
