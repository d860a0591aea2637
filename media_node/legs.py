"""A media leg on the node, and the sink its packets leave by.

The engine keeps the legs (:mod:`media_node.engine`); the data plane routes them
(:mod:`media_node.plane`). Both read this one record, so it stands below both.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from media_node.webrtc import WebRtcLeg
from wire.ice_lite import IceLite
from wire.models import LegCounters
from wire.srtp import SrtpReceiver, SrtpSender
from wire.transports import RungName

#: the suffix of a meeting's content group (no meeting id holds a space)
CONTENT_GROUP: Final = " content"


class Sink(Protocol):
    """Where packets leave: a UDP socket (by address) or one TCP/TLS connection."""

    rung: RungName

    def send(self, data: bytes, addr: Any) -> None: ...


@dataclass(slots=True, eq=False)
class Leg:
    """One participant's media leg on this node.

    Its packet and byte counters include what the data plane relayed only once
    the engine has settled (:meth:`Engine.settle`; every engine read does):
    read them through the engine (``stats``, events, ``release``).
    """

    leg_id: str
    meeting_id: str
    participant_id: str
    ssrc: int
    node_ufrag: str
    client_ufrag: str
    pwd: bytes = field(repr=False)
    inbound: SrtpReceiver = field(repr=False)
    outbound: SrtpSender = field(repr=False)
    created_at: float
    cascade: bool = False  # a leg to or from another node, carrying many SSRCs
    #: a content (screen sharing) leg: relayed among its meeting's content legs only
    content: bool = False
    sink: Sink | None = None
    addr: Any = None
    consent_at: float | None = None
    consent_lost: bool = False
    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    #: ``ssrc`` as it is on the wire (RFC 3550 §5.1), compared per packet without a parse
    ssrc_wire: bytes = field(init=False, repr=False)
    #: the legs that relay among themselves: its meeting's media legs, or its content legs
    group: str = field(init=False, repr=False)
    #: every leg of its meeting on this node, itself included (the engine's own list)
    members: list[Leg] = field(default_factory=list, repr=False)
    #: SSRCs besides its own its SRTCP came from and authenticated (bounded: the engine's
    #: ``RTCP_SSRCS``)
    rtcp_ssrcs: set[bytes] = field(default_factory=set, repr=False)
    #: recent Binding transaction ids of this leg → the path each came from
    seen: OrderedDict[bytes, tuple[Sink, Any]] = field(default_factory=OrderedDict, repr=False)
    #: the leg's ICE-lite agent: its valid pairs, their nominations, the selected pair
    ice: IceLite[tuple[Sink, Any]] = field(default_factory=IceLite, repr=False)
    #: a WebRTC endpoint's DTLS, payload types and send slots (``media_node.webrtc``)
    webrtc: WebRtcLeg | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.ssrc_wire = self.ssrc.to_bytes(4, "big")
        self.group = self.meeting_id + CONTENT_GROUP if self.content else self.meeting_id

    @property
    def rung(self) -> RungName | None:
        return None if self.sink is None else self.sink.rung

    def sends(self, ssrc: bytes) -> bool:
        """Is ``ssrc`` (as on the wire) one of this participant's own streams?"""
        if self.cascade:
            return False
        return ssrc in self.webrtc.ssrcs if self.webrtc is not None else ssrc == self.ssrc_wire

    def counters(self) -> LegCounters:
        return LegCounters(packets_in=self.packets_in, bytes_in=self.bytes_in,
                           packets_out=self.packets_out, bytes_out=self.bytes_out,
                           drops=dict(self.drops))
