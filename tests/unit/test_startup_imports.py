"""What a service imports to start (docs: README "Tests": a service imports only what its
start needs; the suite starts hundreds of them).

Defects pinned down:

- ``wire/stun.py`` imported aioice when loaded, which brings aioice's ICE agent and
  dnspython (about 0.1 s of CPU a process), so every media node and cloud paid for it,
  though a node answers only the fast path's requests and the cloud never meets STUN.
- ``wire/dtls.py`` imported pyOpenSSL when loaded, so every media node (and hybrid
  node) paid for it, though only a WebRTC leg's DTLS association drives OpenSSL; the
  node's certificate and fingerprint need ``cryptography`` alone.
- The cloud imported redis (about 0.08 s of CPU) through its history, node bus, store
  factory, settings and Redis error mapping, though it runs on the memory store unless
  told otherwise.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout.strip()


def _imported(modules: str, roots: tuple[str, ...]) -> str:
    """What of ``roots`` (top-level packages) importing ``modules`` loads, in a fresh
    interpreter."""
    return _run(f"import sys, {modules}; "
                f"print(sorted(m for m in sys.modules if m.split('.')[0] in {roots!r}))")


def test_the_cloud_and_the_media_node_start_without_aioice() -> None:
    found = _imported("cloud.__main__, media_node.__main__", ("aioice", "dns"))
    assert found == "[]", found


def test_the_full_validator_still_uses_aioices_codec() -> None:
    """RFC 8489 §7.3: a request outside the fast path is parsed by aioice's codec, loaded
    on first use."""
    code = ("import sys; from wire.stun import known_required; known_required(); "
            "print('aioice.stun' in sys.modules)")
    assert _run(code) == "True"


def test_the_media_node_and_the_client_start_without_openssl() -> None:
    found = _imported("media_node.__main__, hybrid_node.__main__, client, client.cli",
                      ("OpenSSL",))
    assert found == "[]", found


def test_a_dtls_association_still_loads_openssl() -> None:
    """RFC 5764: a WebRTC leg's DTLS-SRTP server is OpenSSL, loaded when the first
    association is made; the certificate made at start did not need it."""
    code = ("import datetime, sys; import media_node.__main__; "
            "from wire.dtls import DtlsCertificate, DtlsRole, DtlsSrtp; "
            "cert = DtlsCertificate.generate(datetime.datetime.now(datetime.UTC)); "
            "before = 'OpenSSL' in sys.modules; "
            "DtlsSrtp(cert, DtlsRole.SERVER, cert.fingerprint); "
            "print(before, 'OpenSSL.SSL' in sys.modules)")
    assert _run(code) == "False True"


def test_the_cloud_starts_without_redis() -> None:
    """The memory store (the default) needs no Redis client."""
    found = _imported("cloud.__main__", ("redis", "hiredis"))
    assert found == "[]", found


def test_a_redis_store_still_loads_redis() -> None:
    """``PINHOLE_STORE=redis://…`` or ``redis+sentinel://…``: the store (no connection is
    made until its first command) and the history load redis when they are built."""
    code = ("import sys; import cloud.__main__; "
            "from cloud.history import open_history; from cloud.store_factory import open_store; "
            "before = 'redis' in sys.modules; "
            "open_store('redis://127.0.0.1:9/0'); open_history('redis://127.0.0.1:9/0'); "
            "print(before, 'redis.asyncio' in sys.modules)")
    assert _run(code) == "False True"


def test_the_store_factory_knows_the_sentinel_scheme() -> None:
    """The factory spells the Sentinel scheme out (naming the module's constant would
    import redis); both spellings must agree."""
    from cloud import redis_sentinel, settings, store_factory

    assert redis_sentinel.SCHEME in store_factory.SCHEMES
    assert tuple(settings.STORES[1:]) == store_factory.SCHEMES


@pytest.mark.parametrize("error", ["redis", "socket"])
def test_a_redis_or_socket_error_is_the_store_unavailable(error: str) -> None:
    """The mapping that loads redis when first used still catches its errors (and
    socket errors) and lets anything else through."""
    import redis

    from cloud.errors import StoreUnavailable
    from cloud.redis_errors import redis_failures, translated

    raised: Exception = (redis.ConnectionError("gone") if error == "redis"
                         else ConnectionRefusedError("refused"))

    @translated
    async def failing() -> None:
        raise raised

    @translated
    async def wrong() -> None:
        raise ValueError("not the store's")

    assert redis.RedisError in redis_failures()
    with pytest.raises(StoreUnavailable) as caught:
        asyncio.run(failing())
    assert caught.value.__cause__ is raised
    with pytest.raises(ValueError, match="not the store's"):
        asyncio.run(wrong())
