"""Short-lived TURN credentials for WebRTC endpoints, in coturn's shared-secret scheme.

A browser's last rungs are TURN over TLS on 443 (RFC 8656 §3.1): the cloud does
not relay, it tells a device which TURN server to use and mints it a credential
the TURN server can check without asking anyone. The scheme is coturn's
``use-auth-secret`` one (the "TURN REST API"): the cloud and the TURN server
share a secret; the username is ``<unix expiry>:<device id>`` and the password
``base64(HMAC-SHA1(secret, username))``. The TURN server recomputes the password
from the username and refuses a username whose expiry has passed, so a
credential that leaks is good until then and no longer. The TURN server then
runs the long-term credential mechanism (RFC 8489 §9.2) with them.

Core: no HTTP; the route is ``GET /v1/turn`` in :mod:`cloud.devices`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from collections.abc import Sequence
from typing import Final

from pydantic import SecretStr

from cloud.errors import TurnUnavailable
from wire.models import IceServer, IceServers

__all__ = ["SEPARATOR", "expiry_of", "turn_credentials", "turn_password"]

#: between the expiry and the device id (coturn's ``rest-api-separator``, ``:`` by default)
SEPARATOR: Final = ":"


def turn_password(secret: bytes, username: str) -> str:
    """``base64(HMAC-SHA1(secret, username))``: the password the TURN server recomputes."""
    digest = hmac.new(secret, username.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def expiry_of(username: str) -> int:
    """The Unix time a REST username stops being accepted (the digits before the first
    separator, as coturn reads them)."""
    stamp, separator, _ = username.partition(SEPARATOR)
    if not separator or not stamp.isascii() or not stamp.isdigit():
        raise ValueError("a TURN REST username is <unix expiry>:<id>")
    return int(stamp)


def turn_credentials(secret: bytes, device_id: str, now: float, ttl_s: float,
                     urls: Sequence[str]) -> IceServers:
    """The TURN servers at ``urls`` with a credential for ``device_id`` that expires
    ``ttl_s`` after ``now`` (whole seconds, rounded down: never later than asked).

    :class:`~cloud.errors.TurnUnavailable` when no TURN server or no secret is
    configured; ``ValueError`` for a TTL that is not a positive finite number of
    seconds.
    """
    if not urls or not secret:
        raise TurnUnavailable("this cloud has no TURN server configured")
    if not math.isfinite(ttl_s) or ttl_s < 1:
        raise ValueError("a TURN credential lives at least one second")
    username = f"{math.floor(now + ttl_s)}{SEPARATOR}{device_id}"
    server = IceServer(urls=list(urls), username=username,
                       credential=SecretStr(turn_password(secret, username)))
    return IceServers(ice_servers=[server], ttl_s=ttl_s)
