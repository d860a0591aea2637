"""Organisations, device tokens, node secrets, and who may use a meeting.

Organisations come from a JSON file::

    {"orgs": [{"id": "acme", "enrollment_key": "...", "hybrid_node_secret": "..."}]}

Device tokens are ``base64url(claims).base64url(Ed25519 signature)``; the
claims carry a *generation*: re-registering a device bumps it in the store,
which revokes every earlier token of that device (:func:`current`).

A meeting is for its organisation's devices, and for guests who hold its id. A
meeting's id is its link, as a meetings service's join link is: a device of another
organisation that holds it joins as a *guest* (placed on the cloud unless the cloud lets
guests onto the meeting org's clusters, :class:`cloud.assignment.Scope`), and may then do
in the meeting what any participant does with its own participant (leave, move, present,
report its quality). The guest's own org's hybrid nodes never serve it there, and the
meeting org's are never in its node list (``GET /v1/nodes`` is its own org's view).

A *private* meeting is not shared that way: another org's device that is not one of its
participants does not see it (``404``, as for an unknown id: an outsider learns nothing
of it), and its join is refused as every join that reaches none of the org's clusters
is (``409 private_meeting_unreachable``, :func:`cloud.assignment.assign`).
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.errors import IdentityError, NotFound
from cloud.store import DeviceRecord, MeetingRecord, Store


@dataclass(frozen=True, slots=True)
class Org:
    id: str
    enrollment_key: str
    hybrid_node_secret: str


@dataclass(frozen=True, slots=True)
class Claims:
    device_id: str
    org: str
    profile: str
    generation: int
    expires_at: float


def load_orgs(path: str) -> dict[str, Org]:
    """Read the organisations file; a clear ``IdentityError`` when it is wrong."""
    try:
        raw = json.loads(Path(path).read_text())
        return {
            o["id"]: Org(o["id"], o["enrollment_key"], o.get("hybrid_node_secret", ""))
            for o in raw["orgs"]
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IdentityError(
            f"cannot read organisations from {path}: {exc};"
            ' expected {"orgs": [{"id": ..., "enrollment_key": ...}]}'
        ) from exc


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of the UTF-8 bytes; an empty expected secret never matches.

    ``given`` comes from the network: a header aiohttp decoded with
    ``surrogateescape`` may hold lone surrogates, so it is encoded with
    ``surrogatepass`` (such bytes never equal a configured secret) and the
    comparison never raises.
    """
    if not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


VERIFIED_CACHE = 10_000  # tokens whose signature this process has checked


class TokenSigner:
    """Signs and verifies device tokens with an Ed25519 key.

    A token's signature is checked once: the claims of the last
    ``cache_size`` good tokens are kept (an Ed25519 verify is most of an
    authenticated request's cost). Expiry is checked on every use; revocation
    is the caller's (:func:`current` compares the generation).
    """

    def __init__(self, seed_hex: str = "", cache_size: int = VERIFIED_CACHE) -> None:
        seed = bytes.fromhex(seed_hex) if seed_hex else secrets.token_bytes(32)
        self._cache_size = cache_size
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self._public = self._key.public_key()
        self._verified: dict[str, Claims] = {}

    def __repr__(self) -> str:
        return "TokenSigner(<key hidden>)"

    def issue(self, claims: Claims) -> str:
        body = json.dumps(
            {
                "sub": claims.device_id,
                "org": claims.org,
                "prf": claims.profile,
                "gen": claims.generation,
                "exp": claims.expires_at,
            },
            separators=(",", ":"),
        ).encode()
        return _b64(body) + "." + _b64(self._key.sign(body))

    def verify(self, token: str, now: float) -> Claims:
        """The token's claims; ``IdentityError`` when bad or expired (not revocation)."""
        claims = self._verified.get(token)
        if claims is None:
            claims = self._check_signature(token)
            if len(self._verified) >= self._cache_size:
                del self._verified[next(iter(self._verified))]  # the oldest
            self._verified[token] = claims
        if claims.expires_at <= now:
            raise IdentityError("token expired; register again")
        return claims

    def _check_signature(self, token: str) -> Claims:
        try:
            body_b64, sig_b64 = token.split(".")
            body, sig = _unb64(body_b64), _unb64(sig_b64)
            self._public.verify(sig, body)
            raw = json.loads(body)
            claims = Claims(
                str(raw["sub"]), str(raw["org"]), str(raw["prf"]), int(raw["gen"]),
                float(raw["exp"]),
            )
        except (ValueError, KeyError, TypeError, InvalidSignature) as exc:
            raise IdentityError("invalid token") from exc
        return claims


async def current(store: Store, claims: Claims) -> DeviceRecord:
    """The device of verified ``claims``; ``IdentityError`` when a newer registration
    revoked them."""
    device = await store.get_device(claims.device_id)
    if device is None or device.generation != claims.generation:
        raise IdentityError("token revoked by a newer registration; register again")
    return device


def is_guest(claims: Claims, meeting: MeetingRecord) -> bool:
    """The device is of another organisation than the meeting's."""
    return claims.org != meeting.org


def visible(claims: Claims, meeting: MeetingRecord, *, joining: bool = False) -> bool:
    """May this device see ``meeting``: its org's always; a guest a meeting that is not
    private, or one it is in; a guest's join of a private meeting reaches the assignment,
    whose refusal says why (``joining``)."""
    if not is_guest(claims, meeting) or not meeting.private or joining:
        return True
    return any(p.device_id == claims.device_id for p in meeting.participants)


async def find_meeting(store: Store, claims: Claims, meeting_id: str, *,
                       joining: bool = False) -> MeetingRecord:
    """The meeting this device may use, or :class:`NotFound` (unknown, or hidden)."""
    meeting = await store.get_meeting(meeting_id)
    if meeting is None or not visible(claims, meeting, joining=joining):
        raise NotFound(f"no meeting {meeting_id}")
    return meeting
