"""pydantic models for every body of the cloud API and the node control channel.

Untrusted JSON comes in here and nowhere else: each model forbids unknown
fields and bounds its strings and lists, so an oversized or malformed body is
a validation error (the cloud answers 4xx), never an exception deep inside.
Secrets (tokens, ICE passwords, SRTP keys) are :class:`pydantic.SecretStr`:
they serialise in JSON but print as ``'**********'`` in reprs and logs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, SecretStr

#: A secret that is written out in JSON bodies but masked in ``repr``.
Secret = Annotated[
    SecretStr, PlainSerializer(lambda s: s.get_secret_value(), return_type=str, when_used="json")
]

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Name = Annotated[str, Field(min_length=1, max_length=128)]
Host = Annotated[str, Field(min_length=1, max_length=255)]
Port = Annotated[int, Field(ge=1, le=65535)]
RungName = Literal["udp/5004", "udp/9000", "udp/33434", "tcp/5004", "tls/443", "http-proxy"]
TransportName = Literal["udp", "tcp", "tls", "http-proxy"]
ProfileName = Literal["desktop", "mobile", "room", "board"]
SrtpProfileName = Literal["AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM"]
NodeKind = Literal["cloud", "hybrid"]


class Body(BaseModel):
    """Base of every model: unknown fields are refused, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- errors


class ErrorBody(Body):
    """Every error answer: ``{"error": "<code>", "detail": "..."}``."""

    error: str
    detail: str


# ---------------------------------------------------------------- nodes


class Endpoint(Body):
    """One listener of a node: the ladder rung it serves and the real port in use."""

    rung: RungName
    transport: TransportName
    port: Port


class NodeInfo(Body):
    """A node as published in node lists and join answers."""

    id: Id
    kind: NodeKind
    region: Name
    org: Id | None = None
    address: Host
    endpoints: list[Endpoint] = Field(max_length=16)
    fingerprint: str | None = Field(default=None, max_length=128)  # SHA-256 of the TLS cert
    legacy_dc: bool = False
    healthy: bool = True
    load: float = Field(default=0.0, ge=0.0)


class NodeRegistration(Body):
    """``POST /v1/nodes`` (node secret in ``Authorization: Bearer``)."""

    id: Id | None = None
    kind: NodeKind = "cloud"
    region: Name
    org: Id | None = None
    address: Host
    endpoints: list[Endpoint] = Field(min_length=1, max_length=16)
    capacity: int = Field(default=1000, ge=1, le=1_000_000)
    fingerprint: str | None = Field(default=None, max_length=128)
    legacy_dc: bool = False


class NodeRegistered(Body):
    node_id: Id
    control_path: str
    heartbeat_s: float


class NodeList(Body):
    nodes: list[NodeInfo]


# ---------------------------------------------------------------- devices


_PROBED: list[TransportName] = ["udp", "tcp", "tls"]


class ProbePolicy(Body):
    """How and how often a device probes; the report lives ``ttl_s`` (seed: 2 hours)."""

    ttl_s: int = Field(default=7200, ge=1)
    interval_s: int = Field(default=3600, ge=1)
    timeout_ms: int = Field(default=1000, ge=10)
    transports: list[TransportName] = Field(default_factory=lambda: _PROBED.copy())


class DeviceRegistration(Body):
    """``POST /v1/devices``."""

    org: Id
    enrollment_key: Secret
    device_id: Id | None = None  # re-registering an id revokes its earlier tokens
    name: Name = "device"
    profile: ProfileName = "desktop"


class DeviceRegistered(Body):
    device_id: Id
    org: Id
    token: Secret
    expires_at: datetime
    nodes: list[NodeInfo]
    probe_policy: ProbePolicy


# ---------------------------------------------------------------- reachability


class ProbeResult(Body):
    """One endpoint of one node as a device saw it."""

    node_id: Id
    rung: RungName
    reachable: bool
    rtt_ms: float | None = Field(default=None, ge=0.0, le=60_000.0)
    mapped: str | None = Field(default=None, max_length=64)  # "ip:port" the node saw


class ReachabilityReport(Body):
    """``PUT /v1/devices/{id}/reachability``."""

    network: str = Field(default="", max_length=256)  # the device's network identity
    results: list[ProbeResult] = Field(max_length=4096)


class StoredReachability(Body):
    """``GET /v1/devices/{id}/reachability``."""

    device_id: Id
    report: ReachabilityReport
    stored_at: datetime
    expires_at: datetime


# ---------------------------------------------------------------- meetings


class MeetingCreate(Body):
    """``POST /v1/meetings``. With ``id``, the meeting has a name everyone can agree on in
    advance (a compose file's clients, a room's standing meeting): creating it again in the
    same organisation answers the existing meeting (200) instead of a new one (201)."""

    title: str = Field(default="", max_length=256)
    id: Id | None = None


class MeetingCreated(Body):
    id: Id
    org: Id
    title: str
    created_at: datetime


class JoinRequest(Body):
    """``POST /v1/meetings/{id}/participants``."""

    srtp_profile: SrtpProfileName = "AES_CM_128_HMAC_SHA1_80"


class IceCredentials(Body):
    """ICE-style credentials of the node leg (the client authenticates with them)."""

    node_ufrag: Annotated[str, Field(min_length=4, max_length=64)]
    client_ufrag: Annotated[str, Field(min_length=4, max_length=64)]
    pwd: Secret


class SrtpParams(Body):
    """SDES-style keys (RFC 4568 §6.1 inline key||salt, base64), one per direction."""

    profile: SrtpProfileName
    client_to_node: Secret
    node_to_client: Secret


class CandidateScore(Body):
    """One node considered by the assignment and why it scored as it did."""

    node_id: Id
    rung: RungName | None
    rtt_ms: float | None
    transport_penalty_ms: float
    cascade_ms: float
    load_ms: float
    score: float | None
    excluded: str | None = None  # why it could not be chosen, when it could not


class AssignmentReason(Body):
    chosen: Id
    rule: str  # "hybrid-local", "hybrid-overflow" (the org's hybrid node is full) or "lowest-score"
    candidates: list[CandidateScore]


class Joined(Body):
    """The join answer: the assignment and everything the client needs to connect."""

    meeting_id: Id
    participant_id: Id
    node: NodeInfo
    plan: list[Endpoint]
    ice: IceCredentials
    srtp: SrtpParams
    ssrc: int = Field(ge=0, le=0xFFFFFFFF)
    reason: AssignmentReason


class ParticipantView(Body):
    id: Id
    device_id: Id
    node_id: Id
    ssrc: int
    transport: RungName | None = None


class CascadeLink(Body):
    from_node: Id
    to_node: Id


class MeetingView(Body):
    """``GET /v1/meetings/{id}``."""

    id: Id
    org: Id
    title: str
    participants: list[ParticipantView]
    cascades: list[CascadeLink]


# ---------------------------------------------------------------- events


class Event(Body):
    """One message on ``GET /v1/events``."""

    type: Literal["participant.joined", "participant.left", "media.reassigned", "probe.requested"]
    meeting_id: Id | None = None
    participant_id: Id | None = None
    node_id: Id | None = None
    assignment: Joined | None = None  # for media.reassigned


# ---------------------------------------------------------------- call metrics


class CallMetrics(Body):
    """``POST /v1/metrics/calls``: end-of-call quality (the seed's analytics)."""

    meeting_id: Id
    participant_id: Id
    transport: RungName
    duration_s: float = Field(ge=0.0)
    packets_sent: int = Field(ge=0)
    packets_received: int = Field(ge=0)
    loss: float = Field(ge=0.0, le=1.0)
    jitter_ms: float = Field(ge=0.0)
    rtt_ms: float | None = Field(default=None, ge=0.0)
    #: join request to the first media packet received, on the client's clock
    time_to_media_ms: float | None = Field(default=None, ge=0.0, le=3_600_000.0)
    #: False for the reports a client sends during the call (the console shows them live);
    #: only final reports are counted as calls
    final: bool = True


# ---------------------------------------------------------------- node control channel


class LegCounters(Body):
    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    drops: dict[str, int] = Field(default_factory=dict)


class Heartbeat(Body):
    """node → cloud, every heartbeat interval."""

    type: Literal["heartbeat"] = "heartbeat"
    load: float = Field(ge=0.0)
    legs: int = Field(ge=0)
    stats: dict[str, LegCounters] = Field(default_factory=dict)


class AllocateLeg(Body):
    """cloud → node: create a leg the client will authenticate to."""

    type: Literal["allocate_leg"] = "allocate_leg"
    request_id: Id
    leg_id: Id
    meeting_id: Id
    participant_id: Id
    ssrc: int = Field(ge=0, le=0xFFFFFFFF)
    ice: IceCredentials
    srtp: SrtpParams
    cascade: bool = False  # the leg another node will open to this one (``open_cascade``)


class ReleaseLeg(Body):
    type: Literal["release_leg"] = "release_leg"
    leg_id: Id


class OpenCascade(Body):
    """cloud → node: open an outbound leg to ``peer`` for ``meeting_id``."""

    type: Literal["open_cascade"] = "open_cascade"
    meeting_id: Id
    peer: NodeInfo
    leg_id: Id
    ice: IceCredentials
    srtp: SrtpParams


class CloseCascade(Body):
    type: Literal["close_cascade"] = "close_cascade"
    meeting_id: Id
    leg_id: Id


class LegAllocated(Body):
    """node → cloud: the answer to :class:`AllocateLeg`."""

    type: Literal["leg_allocated"] = "leg_allocated"
    request_id: Id
    leg_id: Id
    ok: bool = True
    detail: str = ""


class LegEvent(Body):
    """node → cloud: a leg latched, re-latched, lost consent or was freed."""

    type: Literal["leg_event"] = "leg_event"
    leg_id: Id
    event: Literal["latched", "relatched", "consent_expired", "freed"]
    rung: RungName | None = None
    counters: LegCounters | None = None


NodeToCloud = Annotated[Heartbeat | LegAllocated | LegEvent, Field(discriminator="type")]
CloudToNode = Annotated[
    AllocateLeg | ReleaseLeg | OpenCascade | CloseCascade, Field(discriminator="type")
]
