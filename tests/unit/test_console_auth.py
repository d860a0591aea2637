"""The console's operator check, without sockets: tokens and session cookies, forged or real.

Defects pinned down: the cookie was derived from the operator token alone (a logout left it
good for ever, and it never expired); nothing tried a forged cookie or a wrong bearer token,
so a check that took any non-empty cookie or any ``Bearer`` value passed the suite; refusals
were not counted. Comparisons of secrets go through ``hmac.compare_digest`` (constant time:
a wrong token of the right length, differing late, costs what one differing early does).
"""

from __future__ import annotations

import ast
import hmac
import inspect
import secrets
import textwrap
from collections.abc import Callable
from dataclasses import replace

import pytest

from cloud.app import make_app
from cloud.console import (
    COOKIE,
    MAX_TOKEN_LENGTH,
    SESSION_S,
    bearer_matches,
    check_operator,
    end_session,
    login_answer,
    refusal,
    require,
    signed_session,
    start_session,
)
from cloud.errors import OperatorRequired
from cloud.http import status_of
from cloud.identity import Org, TokenSigner, same_secret
from cloud.settings import CloudSettings
from cloud.state import CLOUD, Cloud
from cloud.store import MAX_CONSOLE_SESSIONS, MemoryStore
from tests.waiting import FakeClock

TOKEN = secrets.token_urlsafe(32)
NODE_SECRET = secrets.token_urlsafe(32)
HYBRID_SECRET = secrets.token_urlsafe(32)



def _cloud(token: str = TOKEN) -> tuple[Cloud, FakeClock]:
    clock = FakeClock(1_000_000.0)
    app = make_app(CloudSettings(node_secret=NODE_SECRET, operator_token=token),
                   MemoryStore(clock), {"acme": Org("acme", "acme-key", HYBRID_SECRET)},
                   TokenSigner())
    cloud = app[CLOUD]
    cloud.clock = clock
    return cloud, clock


def _changed_at(text: str, i: int) -> str:
    """``text`` with one character changed for another of its alphabet (hex, base64url)."""
    return text[:i] + ("0" if text[i] != "0" else "1") + text[i + 1:]


def _refusals(cloud: Cloud, reason: str) -> float:
    value = cloud.metrics.registry.get_sample_value("pinhole_operator_refusals_total",
                                                    {"reason": reason})
    return value or 0.0


@pytest.fixture
def compared(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    """Every pair of byte strings given to ``hmac.compare_digest`` (the real one answers)."""
    calls: list[tuple[bytes, bytes]] = []
    real: Callable[[bytes, bytes], bool] = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    return calls


# ----------------------------------------------------------------------------- bearer


def test_the_bearer_token_is_matched_exactly() -> None:
    assert bearer_matches(f"Bearer {TOKEN}", TOKEN)
    assert bearer_matches(f"bearer {TOKEN}", TOKEN)  # RFC 7235 §2.1: scheme in any case
    assert bearer_matches(f"Bearer  {TOKEN} ", TOKEN)
    for wrong in ("", "Bearer", "Bearer ", f"Basic {TOKEN}", f"Bearer {TOKEN}x",
                  f"Bearer {TOKEN[:-1]}", f"Bearer x{TOKEN}", f"Bearer {TOKEN.upper()}",
                  f"Bearer {NODE_SECRET}", f"Bearer {HYBRID_SECRET}", "Bearer \udcff\udcfe",
                  f"Bearer {TOKEN}\udcff", TOKEN, f"{TOKEN} Bearer"):
        assert not bearer_matches(wrong, TOKEN), wrong
    assert not bearer_matches("Bearer ", "")  # no operator token: nothing matches it


@pytest.mark.parametrize("position", [0, 1, len(TOKEN) // 2, len(TOKEN) - 1])
def test_a_token_of_the_right_length_differing_anywhere_is_compared_in_constant_time(
        compared: list[tuple[bytes, bytes]], position: int) -> None:
    """The check is ``hmac.compare_digest`` over the whole token, not ``==`` (which stops
    at the first difference: its time tells an attacker how much of a guess is right)."""
    guess = _changed_at(TOKEN, position)
    assert len(guess) == len(TOKEN) and not bearer_matches(f"Bearer {guess}", TOKEN)
    assert compared == [(guess.encode(), TOKEN.encode())]


# ----------------------------------------------------------------------------- cookies


async def test_a_login_cookie_is_a_signed_random_session() -> None:
    cloud, _ = _cloud()
    first, second = await start_session(cloud), await start_session(cloud)
    assert first != second and TOKEN not in first
    session_id = signed_session(first, TOKEN)
    assert session_id is not None and first.startswith(session_id + ".")
    assert await cloud.store.console_session(session_id) is None  # the store keeps a hash


async def test_forged_cookies_have_no_session(compared: list[tuple[bytes, bytes]]) -> None:
    cloud, _ = _cloud()
    real = await start_session(cloud)
    session_id, _, signature = real.partition(".")
    forged = ["", "forged", TOKEN, real + "0", real[:-1], real.upper(), f"{session_id}.",
              f".{signature}", f"{secrets.token_urlsafe(32)}.{signature}",
              f"{session_id}.{secrets.token_hex(32)}", real.replace(".", ":"),
              f"{session_id}.{signature}\udcff"]
    forged += [_changed_at(real, i) for i in (0, len(session_id) + 1, len(real) - 1)]
    other_cloud, _ = _cloud(token=secrets.token_urlsafe(32))
    forged.append(await start_session(other_cloud))  # signed under another token
    for cookie in forged:
        assert signed_session(cookie, TOKEN) is None, cookie
    # the signature of a well-shaped cookie is compared in constant time, in full
    compared.clear()
    cookie = _changed_at(real, len(real) - 1)
    assert signed_session(cookie, TOKEN) is None
    [(given, expected)] = compared
    assert given == cookie.partition(".")[2].encode() and len(given) == len(expected) == 64


# ----------------------------------------------------------------------------- the check


async def test_the_operator_is_recognised_by_token_or_live_session() -> None:
    cloud, _ = _cloud()
    cookie = await start_session(cloud)
    assert await refusal(cloud, f"Bearer {TOKEN}", "") is None
    assert await refusal(cloud, "", cookie) is None
    assert await refusal(cloud, f"Bearer {TOKEN}", "forged") is None  # the token decides


async def test_every_refusal_has_its_reason() -> None:
    cloud, clock = _cloud()
    cookie = await start_session(cloud)
    ended = await start_session(cloud)
    await end_session(cloud, ended)
    assert await refusal(cloud, "", "") == "no_credential"
    assert await refusal(cloud, "Bearer wrong", "") == "bad_token"
    assert await refusal(cloud, f"Bearer {_changed_at(TOKEN, 3)}", "") == "bad_token"
    assert await refusal(cloud, f"Bearer {NODE_SECRET}", cookie) == "bad_token"  # not saved
    assert await refusal(cloud, "", "forged") == "bad_cookie"
    assert await refusal(cloud, "", _changed_at(cookie, 5)) == "bad_cookie"
    assert await refusal(cloud, "", ended) == "ended_session"
    assert await refusal(cloud, "", cookie) is None  # one logout ends one login
    clock.now += SESSION_S - 1
    assert await refusal(cloud, "", cookie) is None
    clock.now += 1
    assert await refusal(cloud, "", cookie) == "expired_session"
    assert await refusal(cloud, f"Bearer {TOKEN}", cookie) is None  # the token never expires


async def test_a_closed_console_lets_nobody_in() -> None:
    cloud, _ = _cloud(token="")
    assert await refusal(cloud, "Bearer ", "") == "closed"
    assert await refusal(cloud, "Bearer x", "x") == "closed"
    await end_session(cloud, "anything")  # a logout there is harmless


async def test_a_new_operator_token_ends_every_login() -> None:
    cloud, _ = _cloud()
    cookie = await start_session(cloud)
    cloud.settings = replace(cloud.settings, operator_token=secrets.token_urlsafe(32))
    assert await refusal(cloud, "", cookie) == "bad_cookie"
    assert await refusal(cloud, f"Bearer {TOKEN}", "") == "bad_token"


async def test_a_logout_with_a_forged_cookie_ends_nothing() -> None:
    cloud, _ = _cloud()
    cookie = await start_session(cloud)
    for junk in ("", "forged", _changed_at(cookie, len(cookie) - 1)):
        await end_session(cloud, junk)
    assert await refusal(cloud, "", cookie) is None
    await end_session(cloud, cookie)
    assert await refusal(cloud, "", cookie) == "ended_session"


async def test_refusals_are_counted_by_reason_and_the_operator_is_not() -> None:
    cloud, _ = _cloud()
    cookie = await start_session(cloud)
    assert await check_operator(cloud, f"Bearer {TOKEN}", "")
    assert await check_operator(cloud, "", cookie)
    assert not await check_operator(cloud, "Bearer wrong", "")
    assert not await check_operator(cloud, f"Bearer {NODE_SECRET}", "")
    assert not await check_operator(cloud, "", "forged")
    assert not await check_operator(cloud, "", "")
    assert [_refusals(cloud, r) for r in ("bad_token", "bad_cookie", "no_credential",
                                          "ended_session", "expired_session")] == [2, 1, 1, 0, 0]


@pytest.mark.parametrize("fn", [bearer_matches, signed_session, login_answer])
def test_the_check_compares_secrets_with_compare_digest_only(fn: object) -> None:
    """Reading the code: the secrets of the check meet only in ``same_secret``
    (``hmac.compare_digest``); an ``==`` or ``!=`` compares with a literal, never a token,
    a cookie or a signature with each other."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))  # type: ignore[arg-type]
    calls = {n.func.id for n in ast.walk(tree)
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert "same_secret" in calls
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(isinstance(op, ast.Eq | ast.NotEq)
                                                 for op in node.ops):
            sides = [node.left, *node.comparators]
            assert any(isinstance(side, ast.Constant) for side in sides), ast.unparse(node)
    assert "hmac.compare_digest(" in inspect.getsource(same_secret)


# ----------------------------------------------------------------------------- login


async def test_the_operator_token_logs_in_with_a_strict_cookie_for_a_working_day() -> None:
    """docs/decisions.md: a login lasts 12 hours; the cookie is HttpOnly, Secure,
    SameSite=Strict."""
    assert SESSION_S == 12 * 3600
    cloud, _ = _cloud()
    assert MAX_TOKEN_LENGTH == 512
    for given in (TOKEN, f"  {TOKEN}\n", TOKEN.center(512)):  # at most 512 characters
        answer = await login_answer(cloud, given)
        assert answer.status == 303 and answer.headers["Location"] == "/", given
        morsel = answer.cookies[COOKIE]
        assert morsel["httponly"] and morsel["secure"] and morsel["samesite"] == "Strict"
        assert morsel["path"] == "/" and int(morsel["max-age"]) == SESSION_S
        assert await refusal(cloud, "", morsel.value) is None
    assert _refusals(cloud, "bad_login") == 0


async def test_anything_else_gets_the_form_again_and_is_counted() -> None:
    cloud, _ = _cloud()
    wrong: list[object] = ["", "wrong", _changed_at(TOKEN, 7), TOKEN + "x", NODE_SECRET,
                           TOKEN.center(513), None, b"bytes", 42]
    for given in wrong:
        answer = await login_answer(cloud, given)
        assert answer.status == 401 and COOKIE not in answer.cookies, given
        assert answer.text is not None and "That is not the operator token." in answer.text
        assert "<form method=post action=/login>" in answer.text
    assert _refusals(cloud, "bad_login") == len(wrong)


async def test_a_closed_console_says_how_to_open_it() -> None:
    cloud, _ = _cloud(token="")
    answer = await login_answer(cloud, "")
    assert answer.status == 401 and answer.text is not None
    assert "--operator-token-file" in answer.text and "<form" not in answer.text


async def test_require_answers_401_operator_required_to_anyone_else() -> None:
    cloud, _ = _cloud()
    assert await require(cloud, f"Bearer {TOKEN}", "") is cloud
    assert await require(cloud, "", await start_session(cloud)) is cloud
    for authorization, cookie in (("", ""), ("Bearer wrong", ""), ("", "forged")):
        with pytest.raises(OperatorRequired) as refused:
            await require(cloud, authorization, cookie)
        assert (status_of(refused.value), refused.value.code) == (401, "operator_required")
        assert "Authorization: Bearer <operator token>" in refused.value.detail
    assert _refusals(cloud, "no_credential") == _refusals(cloud, "bad_cookie") == 1


# ----------------------------------------------------------------------------- the store


async def test_the_memory_store_bounds_and_expires_console_logins() -> None:
    clock = FakeClock(1_000_000.0)
    store = MemoryStore(clock)
    for n in range(MAX_CONSOLE_SESSIONS + 1):
        await store.put_console_session(f"k{n}", clock.now + 60, 60)
    assert await store.console_session("k0") is None  # the oldest went first
    assert await store.console_session(f"k{MAX_CONSOLE_SESSIONS}") == clock.now + 60
    clock.now += 61
    assert await store.console_session("k1") is None
    await store.put_console_session("fresh", clock.now + 60, 60)
    assert await store.console_session("fresh") == clock.now + 60
    await store.end_console_session("fresh")
    assert await store.console_session("fresh") is None
