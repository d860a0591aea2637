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

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationError,
    model_validator,
)

from wire.errors import SrtpError
from wire.ice_lite import PASSWORD_MIN, UFRAG_MIN, is_ice_chars, new_password, new_ufrag
from wire.srtp import SrtpKeys, SrtpProfile
from wire.transports import RungName, Transport

#: A secret that is written out in JSON bodies but masked in ``repr``.
Secret = Annotated[
    SecretStr, PlainSerializer(lambda s: s.get_secret_value(), return_type=str, when_used="json")
]

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Name = Annotated[str, Field(min_length=1, max_length=128)]
Host = Annotated[str, Field(min_length=1, max_length=255)]
Port = Annotated[int, Field(ge=1, le=65535)]
ProfileName = Literal["desktop", "mobile", "room", "board"]
SrtpProfileName = Literal["AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM"]
NodeKind = Literal["cloud", "hybrid"]
#: the data plane a node relays on (``media_node.plane``): its C accelerator or the Python twin
PlaneKind = Literal["compiled", "python"]


class Body(BaseModel):
    """Base of every model: unknown fields are refused, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


# ---------------------------------------------------------------- errors


class ErrorBody(Body):
    """Every error answer: ``{"error": "<code>", "detail": "..."}``."""

    error: str
    detail: str


# ---------------------------------------------------------------- nodes


class Endpoint(Body):
    """One listener of a node: the ladder rung it serves and the real port in use."""

    rung: RungName
    transport: Transport
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
    #: the node's DTLS certificate for WebRTC legs, "sha-256 AB:..." (RFC 8122 §5)
    dtls_fingerprint: str | None = Field(default=None, max_length=200)
    legacy_dc: bool = False
    healthy: bool = True
    load: float = Field(default=0.0, ge=0.0)
    #: a hybrid node's cluster in its org (a node registered without one is its own)
    cluster: Id | None = None
    #: a hybrid node's overflow by delay: a device this far from its cluster goes to the cloud
    overflow_rtt_ms: float | None = Field(default=None, gt=0.0, le=60_000.0)


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
    dtls_fingerprint: str | None = Field(default=None, max_length=200)
    legacy_dc: bool = False
    #: for the operator's console; None from a node that does not say
    plane: PlaneKind | None = None
    #: a hybrid node's cluster in its org (none: a cluster of its own)
    cluster: Id | None = None
    #: a hybrid node's cluster sends a device at least this far (STUN RTT) to the cloud
    overflow_rtt_ms: float = Field(default=250.0, gt=0.0, le=60_000.0)


class NodeRegistered(Body):
    node_id: Id
    control_path: str
    heartbeat_s: float


class NodeList(Body):
    nodes: list[NodeInfo]


# ---------------------------------------------------------------- devices


_PROBED: tuple[Transport, ...] = (Transport.UDP, Transport.TCP, Transport.TLS)


class ProbePolicy(Body):
    """How and how often a device probes; the report lives ``ttl_s`` (seed: 2 hours)."""

    ttl_s: int = Field(default=7200, ge=1)
    interval_s: int = Field(default=3600, ge=1)
    timeout_ms: int = Field(default=1000, ge=10)
    transports: list[Transport] = Field(default_factory=lambda: list(_PROBED))


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
    #: all media on the org's clusters, never a cascade to the cloud; a participant who
    #: reaches none of their nodes is refused (409 private_meeting_unreachable)
    private: bool = False


class MeetingCreated(Body):
    id: Id
    org: Id
    title: str
    created_at: datetime
    private: bool = False


class JoinRequest(Body):
    """``POST /v1/meetings/{id}/participants``."""

    srtp_profile: SrtpProfileName = "AES_CM_128_HMAC_SHA1_80"


def _ice_password(value: SecretStr) -> SecretStr:
    if not is_ice_chars(value.get_secret_value()):
        raise ValueError("an ICE password is made of ice-chars only: A-Z a-z 0-9 + /")
    return value


#: RFC 8839 §5.4: ufrag = 4*256ice-char, ice-char = ALPHA / DIGIT / "+" / "/" (never ":",
#: which separates the two ufrags in USERNAME); at most 64 here, so USERNAME stays short.
Ufrag = Annotated[str, Field(min_length=UFRAG_MIN, max_length=64, pattern=r"^[A-Za-z0-9+/]+$")]
#: RFC 8839 §5.4: password = 22*256ice-char (RFC 8445 §5.3: at least 128 random bits).
IcePassword = Annotated[SecretStr, Field(min_length=PASSWORD_MIN, max_length=256),
                        AfterValidator(_ice_password),
                        PlainSerializer(lambda s: s.get_secret_value(), return_type=str,
                                        when_used="json")]


class IceCredentials(Body):
    """ICE-style credentials of the node leg (the client authenticates with them)."""

    node_ufrag: Ufrag
    client_ufrag: Ufrag
    pwd: IcePassword

    @classmethod
    def generate(cls) -> IceCredentials:
        """A new leg's ufrags and password: ice-chars (RFC 8839 §5.4) of RFC 8445 §5.3
        strength."""
        return cls(node_ufrag=new_ufrag(), client_ufrag=new_ufrag(),
                   pwd=SecretStr(new_password()))


class SrtpParams(Body):
    """SDES-style keys (RFC 4568 §6.1 inline key||salt, base64), one per direction.

    Both keys are checked here, where the JSON comes in: valid base64 of exactly
    the master key + salt length the profile takes (30 bytes for
    AES_CM_128_HMAC_SHA1_80, RFC 3711 §8.2; 28 for AEAD_AES_128_GCM, RFC 7714
    §12). A bad key is a validation error whose text names the direction, never
    the key.
    """

    profile: SrtpProfileName
    client_to_node: Annotated[Secret, Field(max_length=64)]
    node_to_client: Annotated[Secret, Field(max_length=64)]

    @model_validator(mode="after")
    def _keys_fit_the_profile(self) -> SrtpParams:
        profile = SrtpProfile(self.profile)
        for direction in ("client_to_node", "node_to_client"):
            secret: SecretStr = getattr(self, direction)
            try:
                SrtpKeys.from_b64(profile, secret.get_secret_value())
            except SrtpError as exc:
                raise ValueError(f"{direction}: {exc}") from None
        return self


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
    #: "hybrid-local", "intra-cluster" (the meeting's node of the cluster is full: another
    #: node of it), "hybrid-overflow" (the whole cluster is full), "overflow-delay" (the
    #: cluster is too far), "guest" (another org's device, on the cloud) or "lowest-score";
    #: for a WebRTC endpoint (no probes) also "meeting-node" or "lowest-load"
    rule: str
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
    #: the rung its content (screen sharing) leg latched on, once it has one
    content_transport: RungName | None = None


class CascadeLink(Body):
    from_node: Id
    to_node: Id
    content: bool = False  # it carries the meeting's content (screen sharing)


class MeetingView(Body):
    """``GET /v1/meetings/{id}``."""

    id: Id
    org: Id
    title: str
    participants: list[ParticipantView]
    cascades: list[CascadeLink]
    presenter: Id | None = None  # who holds the content floor


# ---------------------------------------------------------------- events


class Event(Body):
    """One message on ``GET /v1/events``."""

    #: ``media.reoffer``: the node of this device's WebRTC endpoint is down; it sends a new
    #: SDP offer, which places it on another node
    #: ``floor.granted``, ``floor.taken_over``, ``floor.released``, ``floor.freed``: the
    #: meeting's content floor changed hands (``participant_id``: who presents now, or who
    #: stopped; ``previous_participant_id``: the presenter a take-over displaced)
    type: Literal["participant.joined", "participant.left", "media.reassigned", "media.reoffer",
                  "probe.requested", "floor.granted", "floor.taken_over", "floor.released",
                  "floor.freed"]
    meeting_id: Id | None = None
    participant_id: Id | None = None
    node_id: Id | None = None
    assignment: Joined | None = None  # for media.reassigned
    previous_participant_id: Id | None = None  # for floor.taken_over


# ---------------------------------------------------------------- call metrics


class CallLeg(Body):
    """One leg of a call: the node and rung it used, its packets, when it ran."""

    node: Id
    rung: RungName | None = None
    packets_sent: int = Field(ge=0)
    packets_received: int = Field(ge=0)
    started_ms: float = Field(ge=0.0)  # from the join request, on the device's clock
    ended_ms: float = Field(ge=0.0)
    first_media_ms: float | None = Field(default=None, ge=0.0)
    last_media_ms: float | None = Field(default=None, ge=0.0)


class CallMetrics(Body):
    """``POST /v1/metrics/calls``: end-of-call quality (the seed's analytics).

    The counts are totals over every leg of the call (a reassignment adds a leg);
    ``legs`` lists them in order, ``transport`` is the last leg's.
    """

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
    legs: list[CallLeg] = Field(default_factory=list, max_length=256)


class FloorRequest(Body):
    """``POST /v1/meetings/{id}/floor``: ``participant_id`` (this device's) asks to present;
    ``take_over``: even while another participant presents (it is told)."""

    participant_id: Id
    take_over: bool = False


class FloorView(Body):
    """The meeting's content floor: who presents (``None``: nobody) and what just changed
    (``granted``, ``taken_over``, ``released``, or ``None`` when nothing did)."""

    meeting_id: Id
    presenter: Id | None = None
    previous: Id | None = None  # the presenter a take-over displaced
    change: Literal["granted", "taken_over", "released"] | None = None


class ReassignRequest(Body):
    """``POST …/participants/{pid}/reassign``: the device's leg to ``node_id`` went silent."""

    node_id: Id


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


class PayloadTypeMap(Body):
    """One of a WebRTC endpoint's payload types and the meeting's for the same codec
    (``wire.payload_types``)."""

    leg: int = Field(ge=0, le=127)
    meeting: int = Field(ge=0, le=127)


class SendSlot(Body):
    """A stream the node sends to a WebRTC endpoint, signalled in its answer (RFC 5576
    §4.1): one other participant's audio or video at a time, rewritten to ``ssrc``."""

    ssrc: int = Field(ge=1, le=0xFFFFFFFF)
    kind: Literal["audio", "video"]


class WebRtcLegParams(Body):
    """What a node needs of a WebRTC endpoint's offer to serve its leg."""

    #: the endpoint's DTLS certificate (RFC 8122 §5), checked at the handshake (RFC 8827 §6.5)
    fingerprint: str = Field(min_length=8, max_length=200)  # sha-512: 8 + 191 characters
    #: every SSRC its offer signals (RFC 5576): the node accepts these, and only these
    ssrcs: list[int] = Field(min_length=0, max_length=64)
    payload_types: list[PayloadTypeMap] = Field(max_length=32)
    slots: list[SendSlot] = Field(max_length=32)


class WebRtcOffer(Body):
    """``POST /v1/meetings/{id}/webrtc``: a WebRTC endpoint's SDP offer (RFC 8829 §5.2)."""

    sdp: str = Field(min_length=1, max_length=65536)


class WebRtcJoined(Body):
    """The answer to a WebRTC offer: the node chosen and the SDP answer (RFC 8829 §5.3)."""

    meeting_id: Id
    participant_id: Id
    node: NodeInfo
    sdp: str
    reason: AssignmentReason


#: a TURN URI (RFC 7065 §3.1): turn:HOST[:PORT][?transport=udp|tcp], or turns: (over TLS)
TurnUrl = Annotated[str, Field(min_length=6, max_length=300,
                               pattern=r"^turns?:[^\s?]+(\?transport=(udp|tcp))?$")]


class IceServer(Body):
    """One TURN server and the short-lived credential for it, shaped as a WebRTC
    ``RTCIceServer`` (W3C webrtc-pc §4.2.4) so that a page passes it on as it is."""

    urls: list[TurnUrl] = Field(min_length=1, max_length=8)
    #: coturn's REST scheme: "<unix expiry>:<device id>"
    username: str = Field(min_length=3, max_length=128)
    credential: Annotated[Secret, Field(max_length=128)]


class IceServers(Body):
    """``GET /v1/turn``: the TURN servers a WebRTC endpoint may relay through (RFC 8656),
    and how long their credentials last."""

    ice_servers: list[IceServer] = Field(max_length=8)
    ttl_s: float = Field(gt=0)


class AllocateLeg(Body):
    """cloud → node: create a leg the client will authenticate to."""

    type: Literal["allocate_leg"] = "allocate_leg"
    request_id: Id
    leg_id: Id
    meeting_id: Id
    participant_id: Id
    ssrc: int = Field(ge=0, le=0xFFFFFFFF)
    ice: IceCredentials
    #: keys of a Pinhole leg (SDES-style); a WebRTC leg has ``webrtc`` instead: its keys
    #: come from its DTLS handshake with the node (RFC 5764)
    srtp: SrtpParams | None = None
    webrtc: WebRtcLegParams | None = None
    cascade: bool = False  # the leg another node will open to this one (``open_cascade``)
    #: a content (screen sharing) leg: relayed among the meeting's content legs only
    content: bool = False

    @model_validator(mode="after")
    def _one_kind_of_keys(self) -> AllocateLeg:
        if (self.srtp is None) == (self.webrtc is None):
            raise ValueError("a leg has either srtp keys or webrtc parameters, not both or none")
        return self


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
    #: the cascade of the meeting's content (screen sharing) legs, not its audio/video
    content: bool = False


class CloseCascade(Body):
    type: Literal["close_cascade"] = "close_cascade"
    meeting_id: Id
    leg_id: Id


class SetFloor(Body):
    """cloud → node: who holds ``meeting_id``'s content floor now (``None``: nobody). The
    node relays a content leg's RTP from the presenter only (docs/design.md "Content")."""

    type: Literal["set_floor"] = "set_floor"
    meeting_id: Id
    presenter: Id | None = None


class LegAllocated(Body):
    """node → cloud: the answer to :class:`AllocateLeg`."""

    type: Literal["leg_allocated"] = "leg_allocated"
    request_id: Id
    leg_id: Id
    ok: bool = True
    detail: str = ""


class ControlRefused(Body):
    """node → cloud: a control message the node refused (malformed, or keys that do not fit
    the profile). The node keeps running and keeps its legs; ``detail`` never quotes input."""

    type: Literal["control_refused"] = "control_refused"
    command: str = Field(max_length=32)  # the refused message's type, or "unknown"
    request_id: Id | None = None
    detail: str = Field(max_length=2048)


class LegEvent(Body):
    """node → cloud: a leg latched, re-latched, lost consent or was freed."""

    type: Literal["leg_event"] = "leg_event"
    leg_id: Id
    event: Literal["latched", "relatched", "consent_expired", "freed"]
    rung: RungName | None = None
    counters: LegCounters | None = None


NodeToCloud = Annotated[Heartbeat | LegAllocated | LegEvent | ControlRefused,
                        Field(discriminator="type")]
CloudToNode = Annotated[
    AllocateLeg | ReleaseLeg | OpenCascade | CloseCascade | SetFloor, Field(discriminator="type")
]


def validation_detail(exc: ValidationError) -> str:
    """What was wrong, field by field, without quoting the input (it may hold keys)."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        where = ".".join(str(p) for p in error["loc"]) or "message"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)[:2000]
