"""Device tokens: a signature checked once still leaves expiry and forgery checks in force.

``TokenSigner`` keeps the claims of tokens it has verified (an Ed25519 verify
was most of an authenticated request's cost); these pin that the cache
changes no answer: a cached token still expires, a token changed by one
character is still refused, and the cache stays bounded.
"""

from __future__ import annotations

import pytest

from cloud.errors import IdentityError
from cloud.identity import Claims, TokenSigner


def _claims(expires_at: float = 1000.0, device: str = "d1") -> Claims:
    return Claims(device, "acme", "desktop", 1, expires_at)


def test_a_cached_token_still_expires() -> None:
    signer = TokenSigner()
    token = signer.issue(_claims(expires_at=1000.0))
    assert signer.verify(token, 10.0) == _claims(expires_at=1000.0)
    assert signer.verify(token, 999.0).device_id == "d1"  # from the cache
    with pytest.raises(IdentityError, match="expired"):
        signer.verify(token, 1000.0)


def test_a_changed_token_is_refused_after_the_good_one_was_cached() -> None:
    signer = TokenSigner()
    token = signer.issue(_claims())
    signer.verify(token, 0.0)
    body, sig = token.split(".")
    forged = body + "." + ("A" if sig[0] != "A" else "B") + sig[1:]
    with pytest.raises(IdentityError, match="invalid token"):
        signer.verify(forged, 0.0)
    with pytest.raises(IdentityError, match="invalid token"):
        TokenSigner().verify(token, 0.0)  # another key: never in this signer's cache


def test_the_cache_is_bounded() -> None:
    signer = TokenSigner(cache_size=3)
    tokens = [signer.issue(_claims(device=f"d{i}")) for i in range(10)]
    for token in tokens:
        signer.verify(token, 0.0)
    assert [signer.verify(t, 0.0).device_id for t in tokens] == [f"d{i}" for i in range(10)]
    assert len(signer._verified) == 3
