"""Chaos soak: many two-party calls while a seeded scheduler injects faults.

``--calls`` meetings of two parties each (:mod:`bench.parties`, what ``pinhole
call`` runs) talk for ``--duration`` seconds on a loopback stack of three media
nodes. Every ``--every`` seconds (the last fault at least ``--every`` before the
end) one fault of a kind drawn at random among those the stack allows:

  node-kill     SIGKILL a media node, start it again; back once the cloud lists it
  node-stop     SIGSTOP a media node for --hang seconds, SIGCONT; back once listed
  replica-kill  SIGKILL a cloud replica, start it again; back once HAProxy checks it UP
  replica-stop  SIGSTOP a cloud replica for --hang seconds, SIGCONT; back once UP
  redis-kill    SIGKILL the Redis primary: the Sentinels promote the replica and the
                killed server starts again as the new primary's replica; back once it
                is in sync, every Sentinel sees it and HAProxy checks every replica UP

Replica faults need ``--store redis --replicas N`` (N >= 2: HAProxy in front), the
Redis fault ``--store redis --sentinel``; ``--faults`` narrows the kinds. The seed
(``--seed``, else a random one, printed) fixes the plan: each fault's kind and its
pick among the targets (``--victims busy``: among the nodes carrying a call when
the fault comes, which the run decides). Each fault is logged with its kind, target,
start (at_s) and recovery_s, from the signal until it is back (a hang included). The
calls are judged at the end of ``--duration``, or later once the last fault is over
and 5 s after it began (a call it hit has moved by then).

Figures. A sampler looks at every party every 20 ms: a gap is a stretch of more
than 100 ms without media, from the last packet before it to the packet that ends
it (seen at the next sample: at most 20 ms over). Per call: its gaps, their p50,
p99 and max (nearest rank; null without a gap), the packets lost (sent by one
party, never received by the other), those lost outside gaps (each direction:
max(0, lost - round(the receiver's gap seconds × 50 packets/s)), see
:func:`lost_outside_gaps`), the legs and reassignments asked for, and whether it
ended stuck (a party on a node that is not running, or without media in its last
second). Totals: gap p50/p99/max over every gap of every call, the stuck calls,
and the RSS (VmRSS) of every Pinhole process (cloud replicas, media nodes) at the
start, every minute and at the end, with each process's change since its first
sample (a restarted process starts again). ``goals``: gap p99 under 3 s, no call
stuck. JSON on stdout, progress on stderr; ``--state-dir`` keeps the stack's logs.
The defaults are the full soak (20 calls, 10 minutes, a fault every 30 s); pass
smaller figures on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import uvloop

from bench.join import rss_kb
from bench.parties import Meeting, Party, start_meeting
from lab import haproxy, sentinel
from lab.stack import NodeSpec, Stack, running_stack, wait_healthy
from wire.address import Address

NODES = (NodeSpec("node-a", "eu", 0), NodeSpec("node-b", "us", 20),
         NodeSpec("node-c", "ap", 40))
KINDS = ("node-kill", "node-stop", "replica-kill", "replica-stop", "redis-kill")
GAP_S = 0.1  # 5 packet times without media: a gap
SAMPLE_S = 0.02
PACKETS_PER_S = 50  # Call.talk: one audio packet every 20 ms each way
GOAL_GAP_P99_S = 3.0
HANG_S = 5.0
SETTLE_S = 5.0  # calls are judged this long after the last fault began, at the earliest
RSS_EVERY_S = 60.0
BACK_WITHIN_S = 30.0  # a fault not over by then is logged as not recovered

Strike = Callable[[Stack, str, float], Awaitable[dict[str, Any]]]


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def allowed_kinds(store: str, replicas: int, with_sentinel: bool) -> tuple[str, ...]:
    """The fault kinds this stack can take."""
    def fits(kind: str) -> bool:
        if kind.startswith("replica-"):
            return store == "redis" and replicas >= 2
        return kind != "redis-kill" or (store == "redis" and with_sentinel)
    return tuple(k for k in KINDS if fits(k))


def fault_count(duration_s: float, every_s: float) -> int:
    """Faults due at ``every_s``, 2 × ``every_s`` …, the last ``every_s`` or more before
    the end."""
    return max(0, math.floor(duration_s / every_s + 1e-9) - 1)


def plan(seed: int, kinds: Sequence[str], count: int) -> list[tuple[str, float]]:
    """The soak's faults from ``seed`` alone: a kind each and a pick in [0, 1) that
    chooses its target among the candidates when it comes."""
    rng = random.Random(seed)
    return [(rng.choice(list(kinds)), rng.random()) for _ in range(count)]


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest rank: the smallest value with at least ``p`` % of ``values`` at or below
    it (the max for p99 of fewer than 100 values); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def lost_outside_gaps(lost: int, gap_s: float) -> int:
    """Packets lost in one direction that the receiver's gaps do not explain.

    ``max(0, lost - round(gap_s × PACKETS_PER_S))``: a receiver without media for
    ``gap_s`` seconds in all missed at most that many packets of the sender's 50 a
    second; whatever else went missing was lost while media flowed."""
    return max(0, lost - round(gap_s * PACKETS_PER_S))


@dataclass
class Ear:
    """What the sampler has seen of one party's media."""

    party: Party
    heard: float  # the last media packet seen
    silent: bool = False  # more than GAP_S since ``heard``: in a gap
    gaps: list[tuple[float, float]] = field(default_factory=list)  # (began, seconds)

    def sample(self, now: float) -> None:
        last = self.party.call.session.last_media_at  # of the current leg
        if last is not None and last > self.heard:
            if self.silent:
                self.gaps.append((self.heard, last - self.heard))
            self.heard, self.silent = last, False
        elif now - self.heard > GAP_S:
            self.silent = True

    def close(self, now: float) -> None:
        """End the soak: a gap still open counts up to ``now``."""
        if self.silent:
            self.gaps.append((self.heard, now - self.heard))
            self.silent = False

    def gap_s(self) -> float:
        return sum(s for _, s in self.gaps)


async def _listen(ears: Sequence[Ear]) -> None:
    while True:
        await asyncio.sleep(SAMPLE_S)
        now = time.monotonic()
        for ear in ears:
            ear.sample(now)


# -- faults --------------------------------------------------------------------------


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + BACK_WITHIN_S
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {BACK_WITHIN_S:g} s")
        await asyncio.sleep(0.1)


async def _hang(stack: Stack, name: str, hang_s: float) -> None:
    """SIGSTOP ``name`` for ``hang_s``, then SIGCONT (whatever happens meanwhile)."""
    stack.signal(name, signal.SIGSTOP)
    try:
        await asyncio.sleep(hang_s)
    finally:
        with contextlib.suppress(ProcessLookupError):
            stack.signal(name, signal.SIGCONT)


async def _checked_up(stack: Stack, names: Sequence[str]) -> bool:
    """HAProxy checks every one of ``names`` UP."""
    assert stack.balancer_stats is not None
    try:
        states = await haproxy.server_states(stack.balancer_stats)
    except (OSError, TimeoutError):
        return False
    return all(states.get(name) == "UP" for name in names)


def _replicas(stack: Stack) -> list[str]:
    return [f"cloud-{i}" for i in range(1, len(stack.replica_urls) + 1)]


async def _node_kill(stack: Stack, node: str, hang_s: float) -> dict[str, Any]:
    await stack.restart_node(node)  # SIGKILL, start again, wait until listed
    return {}


async def _node_stop(stack: Stack, node: str, hang_s: float) -> dict[str, Any]:
    await _hang(stack, node, hang_s)
    await wait_healthy(stack, {node}, timeout_s=BACK_WITHIN_S)
    return {"hung_s": hang_s}


async def _replica_kill(stack: Stack, name: str, hang_s: float) -> dict[str, Any]:
    state_file = stack.state_dir / f"{name}.json"  # written once it listens
    state_file.unlink(missing_ok=True)
    proc = await stack.restart(name)

    async def listening() -> bool:
        if proc.returncode is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode} on restart")
        return state_file.exists()

    await _until(listening, f"{name} listening again")
    await _until(lambda: _checked_up(stack, [name]), f"HAProxy checking {name} UP")
    return {}


async def _replica_stop(stack: Stack, name: str, hang_s: float) -> dict[str, Any]:
    await _hang(stack, name, hang_s)
    await _until(lambda: _checked_up(stack, [name]), f"HAProxy checking {name} UP")
    return {"hung_s": hang_s}


def _listening(stack: Stack, name: str) -> Address:
    """Where the Redis server called ``name`` listens (its --bind and --port)."""
    args = stack.commands[name][1]
    return Address(args[args.index("--bind") + 1], int(args[args.index("--port") + 1]))


async def _named_primaries(stack: Stack) -> set[Address | None]:
    """The primary each Sentinel names (None: it names none or does not answer)."""
    named: set[Address | None] = set()
    for s in stack.sentinels:
        client = aioredis.Redis(host=s.host, port=s.port, socket_timeout=1.0,
                                decode_responses=True)
        try:
            got: Any = await client.sentinel_get_master_addr_by_name(
                sentinel.SERVICE, return_responses=True)
        except (aioredis.RedisError, OSError):
            got = None
        finally:
            await client.aclose()
        named.add(Address(got[0], int(got[1])) if got else None)
    return named


async def _primary(stack: Stack) -> str:
    """The name of the Redis server the Sentinels agree is the primary."""
    named = await _named_primaries(stack)
    for name in ("redis", "redis-replica"):
        if named == {_listening(stack, name)}:
            return name
    raise RuntimeError(f"the Sentinels do not agree on a primary: {named}")


async def _redis_kill(stack: Stack, name: str, hang_s: float) -> dict[str, Any]:
    killed_at, old = time.monotonic(), _listening(stack, name)
    await stack.kill(name)
    promoted: list[Address] = []

    async def failed_over() -> bool:
        named = await _named_primaries(stack)
        promoted[:] = [a for a in named if a is not None]
        return len(named) == 1 and None not in named and old not in named

    await _until(failed_over, "the Sentinels naming a new primary")
    failover_s = time.monotonic() - killed_at
    await stack.restart(name, sentinel.server_args(old, str(stack.state_dir), name,
                                                   promoted[0]))
    await _until(lambda: _whole(stack, old), f"{name} back as the replica of {promoted[0]}")
    replica_s = time.monotonic() - killed_at
    if stack.balancer_stats is not None:  # the replicas were not ready without a primary
        await _until(lambda: _checked_up(stack, _replicas(stack)),
                     "HAProxy checking every replica UP")
    return {"failover_s": round(failover_s, 2), "new_primary": str(promoted[0]),
            "in_sync_s": round(replica_s, 2)}


async def _whole(stack: Stack, replica: Address) -> bool:
    return await sentinel.whole(stack.sentinels, replica) == ""


STRIKES: dict[str, Strike] = {
    "node-kill": _node_kill, "node-stop": _node_stop, "replica-kill": _replica_kill,
    "replica-stop": _replica_stop, "redis-kill": _redis_kill,
}


async def _target(stack: Stack, kind: str, pick: float, busy: Sequence[Party] | None) -> str:
    """The process ``kind`` hits: among the candidates by ``pick``, or the Redis primary."""
    if kind == "redis-kill":
        return await _primary(stack)
    if kind.startswith("replica-"):
        pool = _replicas(stack)
    else:
        carrying = sorted({p.node for p in busy}) if busy else []
        pool = carrying or [spec.id for spec in NODES]
    return pool[int(pick * len(pool))]


async def _fault(stack: Stack, kind: str, pick: float, hang_s: float, begin: float,
                 busy: Sequence[Party] | None) -> dict[str, Any]:
    """One fault and its recovery, logged whatever happens: an error is recorded, the
    soak goes on."""
    at = time.monotonic()
    entry: dict[str, Any] = {"kind": kind, "target": None, "at_s": round(at - begin, 1)}
    try:
        entry["target"] = await _target(stack, kind, pick, busy)
        entry.update(await STRIKES[kind](stack, entry["target"], hang_s))
        entry["recovered"] = True
    except Exception as exc:  # a soak reports a fault that did not recover, and goes on
        entry.update(recovered=False, error=f"{type(exc).__name__}: {exc}")
    entry["recovery_s"] = round(time.monotonic() - at, 2)
    _say(f"{entry['at_s']:7.1f} s  {kind} {entry['target']}: "
         + (f"back after {entry['recovery_s']:.1f} s" if entry["recovered"]
            else f"NOT back after {entry['recovery_s']:.1f} s ({entry['error']})"))
    return entry


async def _chaos(stack: Stack, faults: Sequence[tuple[str, float]], every_s: float,
                 hang_s: float, begin: float, log: list[dict[str, Any]],
                 busy: Sequence[Party] | None) -> float:
    """The planned faults, the k-th due at ``begin + k × every_s``, one at a time (a fault
    still recovering delays the next); return when the calls may be judged: once the
    last fault is over and SETTLE_S after it began (a call it hit has moved by then)."""
    judge_at = begin
    for k, (kind, pick) in enumerate(faults, start=1):
        await asyncio.sleep(max(0.0, begin + k * every_s - time.monotonic()))
        judge_at = time.monotonic() + SETTLE_S
        log.append(await _fault(stack, kind, pick, hang_s, begin, busy))
    return judge_at


# -- RSS ---------------------------------------------------------------------------


def _rss_kb(pid: int) -> int | None:
    """VmRSS of ``pid`` in kB (None: gone)."""
    try:
        return rss_kb(pid)
    except OSError:
        return None


def _rss_sample(stack: Stack, at_s: float) -> dict[str, Any]:
    """The RSS of every Pinhole process (cloud replicas, media nodes), by name, and pid."""
    pids = {name: proc.pid for name, proc in sorted(stack.named.items())
            if (name == "cloud" or name.startswith("cloud-") or name in stack.specs)
            and proc.returncode is None}
    return {"at_s": round(at_s, 1), "pid": pids,
            "kb": {name: _rss_kb(pid) for name, pid in pids.items()}}


async def _watch_rss(stack: Stack, begin: float, samples: list[dict[str, Any]]) -> None:
    while True:
        await asyncio.sleep(RSS_EVERY_S)
        samples.append(_rss_sample(stack, time.monotonic() - begin))


def rss_change(samples: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per process at the end: its RSS change since its first sample under the same pid
    (a restarted process starts again) and over how many seconds."""
    changes: dict[str, dict[str, Any]] = {}
    for name, pid in samples[-1]["pid"].items():
        mine = [s for s in samples if s["pid"].get(name) == pid and s["kb"].get(name)]
        if mine:
            changes[name] = {"change_kb": mine[-1]["kb"][name] - mine[0]["kb"][name],
                             "over_s": round(mine[-1]["at_s"] - mine[0]["at_s"], 1)}
    return changes


# -- results -----------------------------------------------------------------------


def _spread(gaps: Sequence[float]) -> dict[str, Any]:
    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 3)
    return {"gap_p50_s": rounded(percentile(gaps, 50)), "gap_p99_s": rounded(percentile(gaps, 99)),
            "gap_max_s": rounded(max(gaps, default=None)), "gap_s": round(sum(gaps), 3)}


def _stuck(meeting: Meeting, running: set[str]) -> list[str]:
    """Why the call is stuck: a party on a node that is not running, or no media in its
    last second; [] when it is not."""
    return [p.node for p in meeting.parties if p.node not in running] or (
        [] if meeting.flowing(1.0) else ["no media in the last second"])


def _result(meeting: Meeting, ears: dict[int, Ear], stuck: list[str],
            begin: float) -> dict[str, Any]:
    a, b = meeting.parties
    ear_a, ear_b = ears[id(a)], ears[id(b)]
    lost_ab, lost_ba = max(0, a.sent() - b.received()), max(0, b.sent() - a.received())
    gaps = sorted(({"party": i, "at_s": round(began - begin, 2), "s": round(s, 3)}
                   for i, ear in enumerate((ear_a, ear_b)) for began, s in ear.gaps),
                  key=lambda g: g["at_s"])
    return {
        "meeting": meeting.id, "gaps": gaps,
        **_spread([s for ear in (ear_a, ear_b) for _, s in ear.gaps]),
        "packets_sent": a.sent() + b.sent(), "packets_lost": lost_ab + lost_ba,
        "lost_outside_gaps": (lost_outside_gaps(lost_ab, ear_b.gap_s())
                              + lost_outside_gaps(lost_ba, ear_a.gap_s())),
        "legs": [len(p.call.legs) for p in meeting.parties],
        "asked": [p.call.asked for p in meeting.parties],
        "nodes": [p.node for p in meeting.parties], "stuck": stuck,
    }


def _totals(results: Sequence[dict[str, Any]], faults: Sequence[dict[str, Any]],
            every_gap: Sequence[float]) -> dict[str, Any]:
    return {
        "gaps": len(every_gap), **_spread(every_gap),
        "packets_sent": sum(r["packets_sent"] for r in results),
        "packets_lost": sum(r["packets_lost"] for r in results),
        "lost_outside_gaps": sum(r["lost_outside_gaps"] for r in results),
        "stuck_calls": sum(1 for r in results if r["stuck"]),
        "faults": len(faults), "faults_not_recovered": sum(not f["recovered"] for f in faults),
    }


# -- the soak ----------------------------------------------------------------------


@dataclass(frozen=True)
class Soak:
    calls: int
    duration_s: float
    every_s: float
    hang_s: float
    seed: int
    kinds: tuple[str, ...]
    store: str = "memory"
    replicas: int = 1
    sentinel: bool = False
    victims: str = "any"
    state_dir: str | None = None  # the stack's files and logs, kept; else a temporary one


async def _stop_talking(meetings: Sequence[Meeting]) -> None:
    """Stop every sender and give the packets in flight time to land."""
    for party in (p for m in meetings for p in m.parties):
        if party.task is not None:
            party.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await party.task
    await asyncio.sleep(0.5)


async def _run(stack: Stack, soak: Soak) -> dict[str, Any]:
    faults = plan(soak.seed, soak.kinds, fault_count(soak.duration_s, soak.every_s))
    meetings: list[Meeting] = []
    for i in range(soak.calls):
        meetings.append(await start_meeting(stack, soak.duration_s + 600))
        _say(f"call {i + 1}/{soak.calls} up")
    parties = [p for m in meetings for p in m.parties]
    ears = {id(p): Ear(p, p.call.session.last_media_at or time.monotonic()) for p in parties}
    begin = time.monotonic()
    rss = [_rss_sample(stack, 0.0)]
    watchers = [asyncio.create_task(_listen(list(ears.values()))),
                asyncio.create_task(_watch_rss(stack, begin, rss))]
    log: list[dict[str, Any]] = []
    _say(f"seed {soak.seed}: {len(faults)} faults among {', '.join(soak.kinds)}")
    try:
        judge_at = await _chaos(stack, faults, soak.every_s, soak.hang_s, begin, log,
                                parties if soak.victims == "busy" else None)
        await asyncio.sleep(max(begin + soak.duration_s, judge_at) - time.monotonic())
    finally:
        for task in watchers:
            task.cancel()
    end = time.monotonic()
    rss.append(_rss_sample(stack, end - begin))
    running = {name for name, proc in stack.named.items() if proc.returncode is None}
    stuck = [_stuck(m, running) for m in meetings]
    for ear in ears.values():
        ear.close(end)
    await _stop_talking(meetings)
    results = [_result(m, ears, s, begin) for m, s in zip(meetings, stuck, strict=True)]
    for meeting in meetings:
        await meeting.close()
    totals = _totals(results, log, [s for ear in ears.values() for _, s in ear.gaps])
    return {"ended_s": round(end - begin, 1), "faults": log, "per_call": results,
            "totals": totals, "rss": {"samples": rss, "change": rss_change(rss)},
            "goals": {"gap_p99_lt_3s": (totals["gap_p99_s"] or 0.0) < GOAL_GAP_P99_S,
                      "stuck_0": totals["stuck_calls"] == 0}}


async def _main(soak: Soak) -> dict[str, Any]:
    with contextlib.ExitStack() as cleanup:
        state = (Path(soak.state_dir) if soak.state_dir else Path(
            cleanup.enter_context(tempfile.TemporaryDirectory(prefix="pinhole-chaos-"))))
        async with running_stack(NODES, state_dir=state, store=soak.store,
                                 replicas=soak.replicas, sentinel=soak.sentinel,
                                 progress=_say) as stack:
            figures = await _run(stack, soak)
    return {"seed": soak.seed, "calls": soak.calls, "duration_s": soak.duration_s,
            "every_s": soak.every_s, "hang_s": soak.hang_s, "kinds": list(soak.kinds),
            "victims": soak.victims, "store": soak.store, "replicas": soak.replicas,
            "sentinel": soak.sentinel, **figures}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=20, help="two-party calls (default 20)")
    p.add_argument("--duration", type=float, default=600.0,
                   help="seconds of chaos (default 600)")
    p.add_argument("--every", type=float, default=30.0,
                   help="one fault this often (default 30 s)")
    p.add_argument("--hang", type=float, default=HANG_S,
                   help=f"seconds a SIGSTOPped process stays hung (default {HANG_S:g})")
    p.add_argument("--seed", type=int, help="the plan's seed (default: a random one, printed)")
    p.add_argument("--faults", help=f"comma-separated kinds, from {', '.join(KINDS)} "
                   "(default: every kind the stack can take)")
    p.add_argument("--store", default="memory", choices=["memory", "redis"],
                   help="the stack's store")
    p.add_argument("--replicas", type=int, default=1,
                   help="cloud replicas behind HAProxy (with --store redis)")
    p.add_argument("--sentinel", action="store_true",
                   help="Redis with a replica and three Sentinels (with --store redis)")
    p.add_argument("--victims", default="any", choices=["any", "busy"],
                   help="node faults hit any node (default), or only nodes carrying a call")
    p.add_argument("--state-dir", help="keep the stack's files and logs here (default: a "
                   "temporary directory, removed at the end)")
    p.add_argument("--json", action="store_true", help="JSON on stdout (always)")
    return p


def _kinds(p: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, ...]:
    allowed = allowed_kinds(args.store, args.replicas, args.sentinel)
    if args.faults is None:
        return allowed
    chosen = tuple(dict.fromkeys(k for k in args.faults.split(",") if k))
    for kind in chosen:
        if kind not in KINDS:
            p.error(f"unknown fault {kind!r}; choose from {', '.join(KINDS)}")
        if kind not in allowed:
            p.error(f"{kind} needs " + ("--store redis --replicas N (N >= 2)"
                                        if kind.startswith("replica-")
                                        else "--store redis --sentinel"))
    if not chosen:
        p.error("--faults names no fault")
    return chosen


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    if args.calls < 1 or args.replicas < 1:
        p.error("--calls and --replicas must be at least 1")
    if min(args.duration, args.every, args.hang) <= 0:
        p.error("--duration, --every and --hang must be more than 0")
    if args.store != "redis" and (args.replicas > 1 or args.sentinel):
        p.error("--replicas N (N > 1) and --sentinel need --store redis")
    seed = random.SystemRandom().randrange(1 << 32) if args.seed is None else args.seed
    soak = Soak(args.calls, args.duration, args.every, args.hang, seed, _kinds(p, args),
                args.store, args.replicas, args.sentinel, args.victims, args.state_dir)
    _say(f"seed {seed} (--seed {seed} plans the same faults again)")
    print(json.dumps(uvloop.run(_main(soak)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
