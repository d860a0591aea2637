"""SDP offer/answer for a WebRTC leg, sans I/O (RFC 8866, RFC 3264, RFC 8829).

A browser (or aiortc) sends an offer; the cloud answers for the node with
:func:`build_answer` after :func:`parse_offer`. What the node is, the answer says:

- an ICE-lite agent (RFC 8445 §2.5): ``a=ice-lite`` at session level (RFC 8839 §5.3),
  host candidates only, each written as ``a=candidate`` (RFC 8839 §5.1), TCP ones with
  ``tcptype passive`` (RFC 6544 §4.5), then ``a=end-of-candidates`` (RFC 8840 §8.2);
  the default candidate (RFC 8839 §4.2.1.2, the first UDP one, else the first) gives
  the ``c=`` address and the ``m=`` port;
- the DTLS server: ``a=setup:passive`` answers ``actpass`` or ``active`` (RFC 8842 §5.1,
  RFC 5763 §5); an offer that is itself ``passive`` (or ``holdconn``) cannot be answered;
- one transport for everything: the offer's BUNDLE group (RFC 8843) answered with the
  accepted mids in offer order (§7.3), rtcp-mux (RFC 5761) required of every section.

Each offered m= section gets one in the answer, same order and mid (RFC 3264 §6). An
audio or video section over DTLS-SRTP is accepted when it offers a codec of
``supported``; the offerer's payload type numbers are kept (RFC 3264 §6.1), only the
supported codecs are answered, in Pinhole's order (opus/48000/2, PCMU/8000; VP8/90000),
each with its offered fmtp and with only the rtcp-fb of :data:`RTCP_FEEDBACK`. No rtx,
red or ulpfec and no header extension is answered: the relay forwards each SRTP packet
as it came, so it has no retransmission streams to map, no redundancy to unwrap and no
extension ids that would differ from one leg's negotiation to the next. Video is VP8
alone: every WebRTC endpoint must implement it (RFC 7742 §5), so it reaches every
browser, while H.264 would add the profile-level-id and packetization-mode negotiation
of RFC 6184 §8.2.2 for no peer that lacks VP8. Any other section (a data channel, no
supported codec, port 0, outside the BUNDLE group, no rtcp-mux) is rejected: port 0, no
direction, not in the answer's BUNDLE group (RFC 8843 §7.3.3, RFC 3264 §6).

Directions (RFC 3264 §6.1): sendrecv → sendrecv when the node has a stream to send on
that mid, else recvonly; recvonly → sendonly when it has one, else inactive;
sendonly → recvonly; inactive → inactive. A stream the node sends is announced with
``a=msid`` and ``a=ssrc:<id> cname:`` / ``msid:`` (RFC 5576 §4.1).

The transport attributes (ice-ufrag, ice-pwd, fingerprint, setup) are written in each
accepted section and once more at session level: aiortc (1.16) reads them for every
m= section of an answer, rejected ones included, and refuses an answer without them.

Parsing is bounded before anything else: at most :data:`MAX_SDP_BYTES` of text,
:data:`MAX_LINES` lines, :data:`MAX_MEDIA` m= sections, :data:`MAX_CODECS` payload types
in a section and :data:`MAX_SSRCS` SSRCs in all. Any bad input raises
:class:`~wire.errors.SdpError`, nothing else.

``sdp_transform`` (untyped) parses the structured lines (m=, rtpmap, fmtp, rtcp-fb,
ssrc, ssrc-group) and writes the answer; this module is its one user, and converts its
dicts at the boundary. Two of its habits are worked around here: it turns any value that
looks like a number into one (a ufrag "0123" into 123, a mid "0" into 0, "a=group:BUNDLE
0" into 0), so single-valued attributes are read from the lines' text; and its candidate
grammar (1.1.0) reads and writes ``tcpfield`` where RFC 6544 §4.5 says ``tcptype``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

import sdp_transform  # type: ignore[import-untyped]

from wire.errors import SdpError
from wire.ice_lite import ICE_MAX, PASSWORD_MIN, UFRAG_MIN, is_ice_chars

MAX_SDP_BYTES: Final = 64 * 1024
#: lines of an offer: a real one is about 35 bytes a line (Chromium 156: 375 lines,
#: 12,937 bytes); sdp_transform tries every grammar rule on an unknown a= line.
MAX_LINES: Final = 4096
MAX_MEDIA: Final = 16
#: payload types in one m= section: Chromium 156 offers 34 in a recvonly video section.
MAX_CODECS: Final = 64
MAX_SSRCS: Final = 64

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
_DIRECTIONS: Final[dict[str, Direction]] = {
    "sendrecv": "sendrecv", "sendonly": "sendonly", "recvonly": "recvonly", "inactive": "inactive",
}
#: RFC 3264 §6.1: the answer's direction, without and with a stream of the node's own
_ANSWERED: Final[dict[Direction, tuple[Direction, Direction]]] = {
    "sendrecv": ("recvonly", "sendrecv"),
    "recvonly": ("inactive", "sendonly"),
    "sendonly": ("recvonly", "recvonly"),
    "inactive": ("inactive", "inactive"),
}
#: DTLS-SRTP profiles a WebRTC section may use (RFC 5764 §8, RFC 7850)
DTLS_PROTOCOLS: Final = frozenset(
    {"UDP/TLS/RTP/SAVPF", "UDP/TLS/RTP/SAVP", "TCP/DTLS/RTP/SAVPF", "TCP/DTLS/RTP/SAVP"})
#: rtcp-fb kept for a kept codec (RFC 4585 §4.2, RFC 5104 §7.1, goog-remb)
RTCP_FEEDBACK: Final = frozenset({"nack", "nack pli", "ccm fir", "goog-remb"})
#: RFC 8122 §5 hash functions and their digest lengths, weakest first
HASH_LENGTHS: Final[dict[str, int]] = {
    "sha-1": 20, "sha-224": 28, "sha-256": 32, "sha-384": 48, "sha-512": 64}
#: RFC 3551 §6, Table 4: static payload types that need no rtpmap
_STATIC: Final[dict[int, tuple[str, int]]] = {0: ("PCMU", 8000), 8: ("PCMA", 8000)}
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")  # RFC 8866 §9 token
_HEX_PAIRS: Final = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})*")
_LINE: Final = re.compile(r"([a-z])=(.*)")  # the lines sdp_transform reads
_M_LINE: Final = ":m"  # the m= line's text among a section's attributes (no name has a colon)
_SSRC_MAX: Final = 0xFFFFFFFF
MAX_MID: Final = 32  # characters of a mid (a token, RFC 5888 §4): Pinhole's bound


@dataclass(frozen=True, slots=True)
class Codec:
    """One payload type of an m= section (RFC 8866 §6.6 rtpmap, §6.15 fmtp; RFC 4585 rtcp-fb)."""

    payload_type: int
    name: str
    clock_rate: int
    channels: int | None
    fmtp: str | None
    rtcp_fb: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MediaOffer:
    """One m= section of an offer."""

    mid: str
    kind: str  # "audio", "video", "application", ...
    direction: Direction
    codecs: tuple[Codec, ...]  # in the m= line's order, payload types without rtpmap skipped
    ssrcs: tuple[int, ...]  # every a=ssrc id, in order of first appearance
    ssrc_groups: tuple[tuple[str, tuple[int, ...]], ...]  # ("FID", (primary, rtx)), ...
    msid: str | None
    rtcp_mux: bool
    port: int
    protocol: str
    formats: tuple[str, ...]  # the m= line's <fmt> list as written


@dataclass(frozen=True, slots=True)
class Offer:
    """An SDP offer. Transport attributes come from the offerer's tagged m= section (the
    first mid of its BUNDLE group, RFC 8843 §7.2.1), else the session level."""

    ice_ufrag: str
    ice_pwd: str = field(repr=False)
    fingerprint: str  # "sha-256 AB:..", as in the SDP: the strongest hash function known
    setup: str  # "actpass", "active", "passive" or "holdconn"; "active" when absent
    bundle: tuple[str, ...]  # the mids of the BUNDLE group; () without one
    media: tuple[MediaOffer, ...]
    ice_options: tuple[str, ...]
    fingerprints: tuple[str, ...] = ()  # every a=fingerprint (RFC 8122 §5 allows several)


@dataclass(frozen=True, slots=True)
class CodecChoice:
    """A codec the node answers: channels None matches an rtpmap without them (one)."""

    kind: str
    name: str
    clock_rate: int
    channels: int | None = None

    def matches(self, kind: str, codec: Codec) -> bool:
        """Same media, subtype (case-insensitive, RFC 4855 §3), clock rate and channels."""
        return (kind == self.kind and codec.name.lower() == self.name.lower()
                and codec.clock_rate == self.clock_rate
                and (codec.channels or 1) == (self.channels or 1))


DEFAULT_CODECS: Final = (
    CodecChoice("audio", "opus", 48000, 2),  # RFC 7587 §7: always opus/48000/2
    CodecChoice("audio", "PCMU", 8000),
    CodecChoice("video", "VP8", 90000),
)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A host candidate of the node (RFC 8839 §5.1; TCP ones passive, RFC 6544 §4.5)."""

    foundation: str
    component: int
    transport: Literal["udp", "tcp"]
    priority: int
    ip: str
    port: int
    type: Literal["host"] = "host"
    tcptype: Literal["passive"] | None = None

    def __post_init__(self) -> None:
        if not (is_ice_chars(self.foundation) and len(self.foundation) <= 32):
            raise ValueError("a foundation is 1 to 32 ice-chars (RFC 8839 §5.1)")
        if not (1 <= self.component <= 256 and 1 <= self.priority <= 0x7FFFFFFF
                and 1 <= self.port <= 0xFFFF):
            raise ValueError("component 1-256, priority 1-(2^31-1), port 1-65535")
        ipaddress.ip_address(self.ip)  # ValueError when it is not one
        if (self.transport == "tcp") != (self.tcptype == "passive"):
            raise ValueError("a TCP candidate, and only one, is tcptype passive (RFC 6544 §4.5)")


@dataclass(frozen=True, slots=True)
class SendStream:
    """A stream the node sends on a section: one SSRC, its CNAME and msid (RFC 8830 §2)."""

    ssrc: int
    cname: str
    msid: str  # "<stream id> <track id>"

    def __post_init__(self) -> None:
        if not 0 <= self.ssrc <= _SSRC_MAX:
            raise ValueError("an SSRC is a 32-bit number (RFC 3550 §5.1)")
        if not (0 < len(self.cname) <= 255 and self.cname.isascii() and self.cname.isprintable()
                and " " not in self.cname):
            raise ValueError("a CNAME is 1 to 255 printable ASCII characters, no space")
        parts = self.msid.split(" ")
        if not (1 <= len(parts) <= 2 and all(_token(p) and len(p) <= 64 for p in parts)):
            raise ValueError("an msid is one or two tokens of 1 to 64 chars (RFC 8830 §2)")


@dataclass(frozen=True, slots=True)
class AnsweredMedia:
    """What the answer says of one offered section; ``direction`` is the node's."""

    mid: str
    kind: str
    accepted: bool
    direction: Direction  # "inactive" for a rejected section (port 0, no direction written)
    codecs: tuple[Codec, ...]
    send: SendStream | None
    receive_ssrcs: tuple[int, ...]  # the offerer's SSRCs, when the node receives


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer's text (it holds the node's ice-pwd: kept out of repr) and its sections."""

    sdp: str = field(repr=False)
    media: tuple[AnsweredMedia, ...]


NO_STREAMS: Final[Mapping[str, SendStream]] = MappingProxyType({})

# ----------------------------------------------------------------------------- parse


def _syntax(message: str) -> SdpError:
    return SdpError("syntax", message)


def _token(value: str) -> bool:
    return _TOKEN.fullmatch(value) is not None


def _scan(text: str) -> list[dict[str, list[str]]]:
    """The limits, then every a= line's text by attribute name: [session, m=1, m=2, ...]."""
    if len(text) > MAX_SDP_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_SDP_BYTES:
        raise SdpError("too_large", f"an SDP offer is at most {MAX_SDP_BYTES} bytes")
    lines = text.splitlines()  # as sdp_transform splits them
    if len(lines) > MAX_LINES:
        raise SdpError("limit", f"an SDP offer has at most {MAX_LINES} lines")
    if not lines or lines[0] != "v=0":
        raise _syntax("an SDP offer starts with v=0 (RFC 8866 §5.1)")
    sections: list[dict[str, list[str]]] = [{}]
    ssrcs: set[str] = set()
    for number, line in enumerate(lines, 1):
        match = _LINE.match(line)
        if match is None:
            if line:
                raise _syntax(f"line {number} is not <type>=<value> (RFC 8866 §5)")
            continue
        kind, value = match.groups()
        if kind == "m":
            if len(sections) > MAX_MEDIA:
                raise SdpError("limit", f"an SDP offer has at most {MAX_MEDIA} m= sections")
            if len(value.split()) - 3 > MAX_CODECS:
                raise SdpError("limit", f"an m= section has at most {MAX_CODECS} payload types")
            sections.append({_M_LINE: [value]})
        elif kind == "a":
            name, _, rest = value.partition(":")
            values = sections[-1].setdefault(name, [])
            values.append(rest)
            if name == "rtpmap" and len(values) > MAX_CODECS:
                raise SdpError("limit", f"an m= section has at most {MAX_CODECS} payload types")
            if name == "ssrc":
                ssrcs.add(rest.split(" ", 1)[0])
                if len(ssrcs) > MAX_SSRCS:
                    raise SdpError("limit", f"an SDP offer has at most {MAX_SSRCS} SSRCs")
    return sections


def _transform(text: str) -> list[dict[str, Any]]:
    """sdp_transform's dict of each m= section; whatever it raises on hostile text is SdpError."""
    try:
        tree = sdp_transform.parse(text)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise _syntax("the SDP could not be parsed") from exc
    media = tree.get("media") if isinstance(tree, dict) else None
    if not isinstance(media, list) or not all(isinstance(m, dict) for m in media):
        raise _syntax("the SDP could not be parsed")
    return media


def _text(value: object, what: str) -> str:
    """A textual field of sdp_transform's (which may have made a number of it)."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _syntax(f"{what} is missing or empty")


def _number(value: object, low: int, high: int, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    # int() refuses more than 4,300 digits (ValueError): the length is checked first
    if (isinstance(value, str) and len(value) <= 20 and value.isascii() and value.isdigit()
            and low <= int(value) <= high):
        return int(value)
    raise _syntax(f"{what} is a number from {low} to {high}")


def _payload_type(value: object) -> int:
    return _number(value, 0, 127, "a payload type (RFC 3550 §5.1)")


def _ssrc(value: object) -> int:
    return _number(value, 0, _SSRC_MAX, "an SSRC (RFC 3550 §5.1)")


def _entries(media: dict[str, Any], key: str, attrs: dict[str, list[str]], *names: str,
             shape: str) -> list[dict[str, Any]]:
    """sdp_transform's list for ``key``: one entry per a= line of ``names``, else syntax."""
    entries = media.get(key) or []
    other = (media.get("rtcpFbTrrInt") or []) if key == "rtcpFb" else []
    expected = sum(len(attrs.get(name, ())) for name in names)
    if not isinstance(entries, list) or len(entries) + len(other) != expected:
        raise _syntax(f"an a={names[0]} line is not {shape}")
    return [e for e in entries if isinstance(e, dict)]


def _codecs(media: dict[str, Any], attrs: dict[str, list[str]],
            formats: tuple[int, ...]) -> tuple[Codec, ...]:
    rtpmaps: dict[int, tuple[str, int, int | None]] = {}
    for entry in _entries(media, "rtp", attrs, "rtpmap",
                          shape="<pt> <name>/<rate>[/<channels>] (RFC 8866 §6.6)"):
        channels = entry.get("encoding")
        rtpmaps.setdefault(_payload_type(entry.get("payload")), (
            _text(entry.get("codec"), "an rtpmap's encoding name"),
            _number(entry.get("rate"), 1, 0xFFFFFFFF, "a clock rate"),
            None if channels is None else _number(channels, 1, 255, "a channel count")))
    fmtps: dict[int, str] = {}
    for entry in _entries(media, "fmtp", attrs, "fmtp", shape="<pt> <parameters> (RFC 8866 §6.15)"):
        fmtps.setdefault(_payload_type(entry.get("payload")), _text(entry.get("config"), "fmtp"))
    feedback: dict[int | None, list[str]] = {}
    for entry in _entries(media, "rtcpFb", attrs, "rtcp-fb", shape="<pt> <type> (RFC 4585 §4.2)"):
        payload = entry.get("payload")
        key = None if payload == "*" else _payload_type(payload)
        words = [_text(entry.get("type"), "an rtcp-fb type")]
        if entry.get("subtype") is not None:
            words.append(_text(entry.get("subtype"), "an rtcp-fb parameter"))
        feedback.setdefault(key, []).append(" ".join(words))
    codecs = []
    for pt in formats:
        name_rate = rtpmaps.get(pt) or (_STATIC[pt] + (None,) if pt in _STATIC else None)
        if name_rate is not None:
            fb = dict.fromkeys([*feedback.get(None, ()), *feedback.get(pt, ())])
            codecs.append(Codec(pt, *name_rate, fmtps.get(pt), tuple(fb)))
    return tuple(codecs)


def _media(number: int, media: dict[str, Any], attrs: dict[str, list[str]],
           session: dict[str, list[str]]) -> MediaOffer:
    kind, port, protocol = media.get("type"), media.get("port"), media.get("protocol")
    formats = tuple(attrs[_M_LINE][0].split()[3:])  # as written: "1e5" is no number here
    if not (kind and isinstance(port, int) and protocol and formats):
        raise _syntax(f"m= line {number} is not <media> <port> <proto> <fmt> ... (RFC 8866 §5.14)")
    port = _number(port, 0, 0xFFFF, "a port")
    protocol = _text(protocol, "a transport protocol")
    payload_types: tuple[int, ...] = ()
    if "RTP/" in protocol:
        payload_types = tuple(_payload_type(f) for f in formats)
        if len(set(payload_types)) != len(payload_types):
            raise _syntax(f"m= line {number} lists a payload type twice")
    mids = attrs.get("mid")
    if not mids:
        raise SdpError("missing", f"m= section {number} has no a=mid (RFC 5888 §4)")
    if not (_token(mids[-1]) and len(mids[-1]) <= MAX_MID):
        raise _syntax(f"m= section {number} has a mid that is not a token of 1 to {MAX_MID} "
                      "chars (RFC 5888 §4)")
    present = [d for d in _DIRECTIONS if d in attrs] or [d for d in _DIRECTIONS if d in session]
    if len(present) > 1:
        raise _syntax(f"m= section {number} has more than one direction (RFC 8866 §6.7)")
    ssrcs: dict[int, None] = {}
    for entry in _entries(media, "ssrcs", attrs, "ssrc",
                          shape="<ssrc-id> <attribute>[:<value>] (RFC 5576 §4.1)"):
        ssrcs.setdefault(_ssrc(entry.get("id")))
    groups = []
    for entry in _entries(media, "ssrcGroups", attrs, "ssrc-group",
                          shape="<semantics> <ssrc-id> ... (RFC 5576 §4.2)"):
        members = tuple(_ssrc(s) for s in str(entry.get("ssrcs", "")).split())
        if not members:
            raise _syntax("an a=ssrc-group names no SSRC (RFC 5576 §4.2)")
        groups.append((_text(entry.get("semantics"), "an ssrc-group's semantics"), members))
    msid = attrs.get("msid")
    return MediaOffer(
        mid=mids[-1], kind=_text(kind, "a media type"),
        direction=_DIRECTIONS[present[0]] if present else "sendrecv",
        codecs=_codecs(media, attrs, payload_types), ssrcs=tuple(ssrcs),
        ssrc_groups=tuple(groups), msid=msid[-1] if msid else None,
        rtcp_mux="rtcp-mux" in attrs, port=port, protocol=protocol, formats=formats)


def _bundle(session: dict[str, list[str]], mids: Sequence[str]) -> tuple[str, ...]:
    groups = [g.split() for g in session.get("group", ())]
    bundles = [g[1:] for g in groups if g and g[0] == "BUNDLE"]
    if len(bundles) > 1:
        raise SdpError("unsupported", "an offer with more than one BUNDLE group (RFC 8843)")
    if not bundles:
        return ()
    if not bundles[0] or not set(bundles[0]) <= set(mids) or len(set(bundles[0])) < len(bundles[0]):
        raise _syntax("the BUNDLE group names a mid of no m= section, or none (RFC 5888 §5)")
    return tuple(bundles[0])


def _fingerprint(value: str) -> tuple[str, str] | None:
    """(hash function, digest) of an a=fingerprint (RFC 8122 §5); None: a function unknown."""
    parts = value.split(" ")
    if len(parts) != 2 or not _HEX_PAIRS.fullmatch(parts[1]):
        raise _syntax("an a=fingerprint is '<hash-func> XX:XX:...' (RFC 8122 §5)")
    function = parts[0].lower()
    if function not in HASH_LENGTHS:
        return None
    if len(parts[1]) != 3 * HASH_LENGTHS[function] - 1:
        raise _syntax(f"a {function} fingerprint is {HASH_LENGTHS[function]} bytes (RFC 8122 §5)")
    return function, parts[1]


def _transport(attrs: dict[str, list[str]], session: dict[str, list[str]],
               name: str) -> list[str] | None:
    """RFC 8839 §5.4, RFC 8122 §5: media level wins over session level."""
    return attrs.get(name) or session.get(name)


def parse_offer(text: str) -> Offer:
    """The offer in ``text``; :class:`SdpError` on anything else, whatever the input."""
    raw = _scan(text)
    tree = _transform(text)
    if len(tree) != len(raw) - 1:
        raise _syntax("the m= sections could not be told apart")
    session = raw[0]
    sections = enumerate(zip(tree, raw[1:], strict=True), 1)
    media = tuple(_media(number, m, attrs, session) for number, (m, attrs) in sections)
    mids = [m.mid for m in media]
    if len(set(mids)) != len(mids):
        raise _syntax("two m= sections have the same mid (RFC 5888 §4)")
    bundle = _bundle(session, mids)
    tagged = raw[1 + mids.index(bundle[0])] if bundle else (raw[1] if media else {})
    ufrag, pwd = _transport(tagged, session, "ice-ufrag"), _transport(tagged, session, "ice-pwd")
    if not ufrag or not pwd:
        raise SdpError("missing", "the offer has no a=ice-ufrag or no a=ice-pwd (RFC 8839 §5.4)")
    if not (is_ice_chars(ufrag[-1]) and UFRAG_MIN <= len(ufrag[-1]) <= ICE_MAX):
        raise _syntax(f"an ice-ufrag is {UFRAG_MIN} to {ICE_MAX} ice-chars (RFC 8839 §5.4)")
    if not (is_ice_chars(pwd[-1]) and PASSWORD_MIN <= len(pwd[-1]) <= ICE_MAX):
        raise _syntax(f"an ice-pwd is {PASSWORD_MIN} to {ICE_MAX} ice-chars (RFC 8839 §5.4)")
    fingerprints = _transport(tagged, session, "fingerprint")
    if not fingerprints:
        raise SdpError("missing", "the offer has no a=fingerprint (RFC 8122 §5)")
    known = [(list(HASH_LENGTHS).index(f[0]), text) for text in fingerprints
             if (f := _fingerprint(text)) is not None]
    if not known:
        raise SdpError("unsupported", "no a=fingerprint of the offer uses a hash function "
                       f"Pinhole knows ({', '.join(HASH_LENGTHS)})")
    setup = (_transport(tagged, session, "setup") or ["active"])[-1]  # RFC 4145 §4
    if setup not in ("actpass", "active", "passive", "holdconn"):
        raise _syntax("a=setup is actpass, active, passive or holdconn (RFC 4145 §4)")
    options = _transport(tagged, session, "ice-options") or [""]
    return Offer(ice_ufrag=ufrag[-1], ice_pwd=pwd[-1], fingerprint=max(known)[1], setup=setup,
                 bundle=bundle, media=media, ice_options=tuple(options[-1].split()),
                 fingerprints=tuple(fingerprints))


# ----------------------------------------------------------------------------- answer


def _answered(media: MediaOffer, bundle: Sequence[str], stream: SendStream | None,
              supported: Sequence[CodecChoice]) -> AnsweredMedia:
    codecs: list[Codec] = []
    for choice in supported:
        codec = next((c for c in media.codecs if choice.matches(media.kind, c)), None)
        if codec is not None and codec not in codecs:
            fb = tuple(f for f in codec.rtcp_fb if f in RTCP_FEEDBACK)
            codecs.append(Codec(codec.payload_type, codec.name, codec.clock_rate,
                                codec.channels, codec.fmtp, fb))
    if not (codecs and media.port and media.mid in bundle and media.rtcp_mux
            and media.protocol in DTLS_PROTOCOLS):
        return AnsweredMedia(media.mid, media.kind, False, "inactive", (), None, ())
    direction = _ANSWERED[media.direction][stream is not None]
    sends = direction in ("sendrecv", "sendonly")
    receives = direction in ("sendrecv", "recvonly")
    return AnsweredMedia(media.mid, media.kind, True, direction, tuple(codecs),
                         stream if sends else None, media.ssrcs if receives else ())


def _own_fingerprint(fingerprint: str) -> dict[str, str]:
    try:
        known = _fingerprint(fingerprint)
    except SdpError:
        known = None
    if known is None:
        raise ValueError("the node's fingerprint is '<sha-1|sha-2 function> XX:XX:...'")
    return {"type": fingerprint.split(" ")[0], "hash": known[1]}


def _section(media: MediaOffer, answered: AnsweredMedia, transport: dict[str, Any],
             default: Candidate, candidates: Sequence[Candidate]) -> dict[str, Any]:
    """sdp_transform's dict of one answered m= section."""
    if not answered.accepted:
        return {"type": media.kind, "port": 0, "protocol": media.protocol,
                "payloads": " ".join(media.formats),
                "connection": {"version": 4, "ip": "0.0.0.0"}, "mid": media.mid}
    section: dict[str, Any] = {
        "type": media.kind, "port": default.port, "protocol": media.protocol,
        "payloads": " ".join(str(c.payload_type) for c in answered.codecs),
        "connection": {"version": ipaddress.ip_address(default.ip).version, "ip": default.ip},
        "rtp": [{"payload": c.payload_type, "codec": c.name, "rate": c.clock_rate,
                 "encoding": c.channels} for c in answered.codecs],
        "fmtp": [{"payload": c.payload_type, "config": c.fmtp}
                 for c in answered.codecs if c.fmtp is not None],
        "rtcpFb": [{"payload": c.payload_type, "type": f.split(" ")[0],
                    "subtype": f.split(" ")[1] if " " in f else None}
                   for c in answered.codecs for f in c.rtcp_fb],
        **transport,
        "candidates": [{"foundation": c.foundation, "component": c.component,
                        "protocol": c.transport, "priority": c.priority, "ip": c.ip,
                        "port": c.port, "type": c.type, "tcptype": c.tcptype}
                       for c in candidates],
        "endOfCandidates": "end-of-candidates",
        "direction": answered.direction, "mid": media.mid, "rtcpMux": "rtcp-mux",
    }
    if answered.send is not None:
        send = answered.send
        section["msid"] = send.msid
        section["ssrcs"] = [{"id": send.ssrc, "attribute": "cname", "value": send.cname},
                            {"id": send.ssrc, "attribute": "msid", "value": send.msid}]
    return section


def _write(tree: dict[str, Any]) -> str:
    """The one call to sdp_transform's writer; its candidate grammar (1.1.0) says tcpfield."""
    text = sdp_transform.write(tree)
    if not isinstance(text, str):
        raise TypeError("sdp_transform.write returned no text")
    return text.replace(" typ host tcpfield passive", " typ host tcptype passive")


def build_answer(offer: Offer, *, ice_ufrag: str, ice_pwd: str, fingerprint: str,
                 candidates: Sequence[Candidate], session_id: int,
                 send_streams: Mapping[str, SendStream] = NO_STREAMS,
                 supported: Sequence[CodecChoice] = DEFAULT_CODECS) -> Answer:
    """The node's answer to ``offer`` (module docstring for the rules).

    :class:`SdpError` ``"unsupported"`` when the offer cannot be answered (its setup is
    passive or holdconn, it has no BUNDLE group, no section can be accepted);
    ``ValueError`` on arguments of the caller's that are wrong.
    """
    if not (is_ice_chars(ice_ufrag) and UFRAG_MIN <= len(ice_ufrag) <= ICE_MAX
            and is_ice_chars(ice_pwd) and PASSWORD_MIN <= len(ice_pwd) <= ICE_MAX):
        raise ValueError("the node's ufrag and pwd are ice-chars of RFC 8839 §5.4's lengths")
    if not candidates:
        raise ValueError("an answer needs at least one candidate")
    if not 0 <= session_id < 1 << 63:
        raise ValueError("a session id is a 63-bit number (RFC 8829 §5.2.1)")
    mids = {m.mid for m in offer.media}
    if not set(send_streams) <= mids:
        raise ValueError(f"no offered section has mid {sorted(set(send_streams) - mids)[0]!r}")
    ours = [s.ssrc for s in send_streams.values()]
    theirs = {ssrc for m in offer.media for ssrc in m.ssrcs}
    if len(set(ours)) != len(ours) or theirs.intersection(ours):
        raise ValueError("each send stream needs an SSRC of its own (RFC 3550 §8.2)")
    if offer.setup not in ("actpass", "active"):
        raise SdpError("unsupported", f"an offer with a=setup:{offer.setup} leaves the node no "
                       "DTLS role: it is the DTLS server (RFC 8842 §5.1)")
    if not offer.bundle:
        raise SdpError("unsupported", "an offer without a BUNDLE group: the node answers "
                       "every section on one transport (RFC 8843)")
    answered = tuple(_answered(m, offer.bundle, send_streams.get(m.mid), supported)
                     for m in offer.media)
    if not any(a.accepted for a in answered):
        raise SdpError("unsupported", "no m= section of the offer can be answered: none "
                       "offers a supported codec over DTLS-SRTP in the BUNDLE group")
    transport = {"iceUfrag": ice_ufrag, "icePwd": ice_pwd,
                 "fingerprint": _own_fingerprint(fingerprint), "setup": "passive"}
    default = next((c for c in candidates if c.transport == "udp"), candidates[0])
    tree: dict[str, Any] = {
        "version": 0,
        "origin": {"username": "-", "sessionId": session_id, "sessionVersion": 0,
                   "netType": "IN", "ipVer": 4, "address": "0.0.0.0"},
        "name": "-",
        "timing": {"start": 0, "stop": 0},
        "icelite": "ice-lite",
        **transport,
        "msidSemantic": {"semantic": "WMS", "token": "*"},
        "groups": [{"type": "BUNDLE", "mids": " ".join(a.mid for a in answered if a.accepted)}],
        "media": [_section(m, a, transport, default, candidates)
                  for m, a in zip(offer.media, answered, strict=True)],
    }
    return Answer(sdp=_write(tree), media=answered)
