"""``pinhole-hybrid-node reflector``: the pre-deployment check, and the reflector it talks to.

Run from where a hybrid node will live, before it is enrolled:

- ``reflector check`` tries what the node will need (:mod:`hybrid_node.reflector_report`
  words the verdicts and the rules): HTTPS to the cloud (its ``/healthz``, the
  certificate verified against ``--ca``); a STUN Binding Request (RFC 8489 §6) to the
  reflector's UDP 5004 from source ports spread over ``--cascade-ports``, and one over
  TCP 5004 (RFC 4571 framing); with ``--clients-s N`` it then answers on the node's own
  media ports for N seconds, and each port passes once an enterprise client's probe
  arrived there (``reflector probe`` on a client meanwhile).
- ``reflector serve`` is the small reflector the cloud side runs (on a cloud media
  node's address, or anywhere the node's cascades go): it answers every Binding Request
  on UDP and TCP with the address it came from (XOR-MAPPED-ADDRESS), nothing else, and
  never more than twice the request's size (RFC 8489 §2: no amplification).
- ``reflector probe`` asks a reflector from here: what an enterprise client runs
  against the node's host while ``check --clients-s`` listens there.

The exit status is the verdict, on the error boundary's scale (``edge.boundary``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from edge import boundary
from edge.flags import (
    PORT,
    Parser,
    add_settings,
    apply_environment,
    seconds,
    setting,
    settings_from,
)
from hybrid_node.dial import HYBRID_PORTS
from hybrid_node.reflector_report import (
    Check,
    CheckResult,
    Verdict,
    Where,
    as_json,
    exit_code,
    render,
    sample_ports,
    span,
)
from hybrid_node.settings import PROG, PortRange, port_span
from wire.address import Address
from wire.errors import FramingError, StunError
from wire.multiplex import FrameDecoder, encode_frame
from wire.stun import (
    build_discovery_probe,
    build_discovery_response,
    match_discovery,
    parse_binding_response,
    transaction_id_of,
)
from wire.tls import client_context

SOFTWARE: Final = "pinhole-reflector"
#: one probe's wait for its answer, and how many times a UDP probe is sent (RFC 8489 §6.2.1
#: retransmits; a fresh transaction id each, as discovery does: docs/design.md)
PROBE_TIMEOUT_S: Final = 1.5
UDP_TRIES: Final = 3
REFLECTOR_PROG: Final = f"{PROG} reflector"


# ----------------------------------------------------------------------------- the server


class Reflector:
    """A STUN Binding responder on one UDP and one TCP port; it remembers who asked."""

    def __init__(self, on_probe: Callable[[str, Address], None] = lambda *_: None) -> None:
        self.on_probe = on_probe
        self.udp: asyncio.DatagramTransport | None = None
        self.tcp: asyncio.Server | None = None
        self.answered = 0
        self.dropped = 0

    def answer(self, data: bytes, source: Address) -> bytes | None:
        """The answer to one datagram or frame: a Binding success, or None (dropped)."""
        if not match_discovery(data):
            self.dropped += 1
            return None
        reply = build_discovery_response(transaction_id_of(data), source, SOFTWARE,
                                         max_length=2 * len(data))
        if reply is None:
            self.dropped += 1
            return None
        self.answered += 1
        return reply

    async def start(self, host: str, udp_port: int, tcp_port: int) -> None:
        loop = asyncio.get_running_loop()
        reflector = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                source = Address(addr[0], addr[1])
                reply = reflector.answer(data, source)
                if reply is not None:
                    self.transport.sendto(reply, addr)
                    reflector.on_probe("udp", source)

        self.udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=(host, udp_port))
        self.tcp = await asyncio.start_server(self._stream, host, tcp_port)

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        source = Address(str(peer[0]), int(peer[1]))
        frames = FrameDecoder()
        try:
            async with asyncio.timeout(10):  # a probe, not a session
                while chunk := await reader.read(2048):
                    for frame in frames.feed(chunk):
                        reply = self.answer(frame, source)
                        if reply is not None:
                            writer.write(encode_frame(reply))
                            self.on_probe("tcp", source)
                    await writer.drain()
        except (TimeoutError, FramingError, OSError):
            self.dropped += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def ports(self) -> tuple[int, int]:
        assert self.udp is not None and self.tcp is not None
        return (int(self.udp.get_extra_info("sockname")[1]),
                int(self.tcp.sockets[0].getsockname()[1]))

    async def close(self) -> None:
        if self.udp is not None:
            self.udp.close()
        if self.tcp is not None:
            self.tcp.close()
            await self.tcp.wait_closed()


# ----------------------------------------------------------------------------- probes


class _Answers(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)


async def probe_udp(target: Address, *, source: tuple[str, int] | None = None,
                    timeout_s: float = PROBE_TIMEOUT_S) -> Address:
    """The address ``target`` saw this probe come from; OSError or TimeoutError."""
    loop = asyncio.get_running_loop()
    transport, answers = await loop.create_datagram_endpoint(
        _Answers, remote_addr=(target.host, target.port), local_addr=source)
    try:
        for _ in range(UDP_TRIES):
            request = build_discovery_probe()
            transport.sendto(request)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s / UDP_TRIES):
                    while True:
                        mapped = _mapped(await answers.queue.get(), request)
                        if mapped is not None:
                            return mapped
        raise TimeoutError(f"no answer from {target.host}:{target.port} in {timeout_s:g} s")
    finally:
        transport.close()


async def probe_tcp(target: Address, *, source: str | None = None,
                    timeout_s: float = PROBE_TIMEOUT_S) -> Address:
    """The same over TCP, RFC 4571 framing; OSError or TimeoutError."""
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(
            target.host, target.port, local_addr=None if source is None else (source, 0))
        try:
            request = build_discovery_probe()
            writer.write(encode_frame(request))
            await writer.drain()
            length = int.from_bytes(await reader.readexactly(2), "big")
            mapped = _mapped(await reader.readexactly(length), request)
        finally:
            writer.close()
    if mapped is None:
        raise ConnectionError(f"{target.host}:{target.port} answered, but not a STUN answer")
    return mapped


def _mapped(data: bytes, request: bytes) -> Address | None:
    try:
        answer = parse_binding_response(data)
    except StunError:
        return None
    return answer.mapped if answer.transaction_id == request[8:20] else None


async def check_cloud(url: str, ca: str | None, *, timeout_s: float = 5.0) -> CheckResult:
    """HTTPS to the cloud's ``/healthz``, its certificate verified (TLS inspection fails
    here, as it would the node's control channel)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=client_context(ca), server_hostname=host)
            try:
                writer.write(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close"
                             "\r\n\r\n".encode())
                status = (await reader.readline()).decode(errors="replace").split()
            finally:
                writer.close()
    except ssl.SSLCertVerificationError as exc:
        return CheckResult(Check.CLOUD_TLS, Verdict.FAIL, f"{host}:{port}: the certificate "
                           f"did not verify ({exc.verify_message}): TLS inspection?")
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        return CheckResult(Check.CLOUD_TLS, Verdict.FAIL, f"{host}:{port}: {_why(exc)}")
    ms = (time.monotonic() - started) * 1000
    code = status[1] if len(status) > 1 else "?"
    verdict = Verdict.PASS if code == "200" else Verdict.FAIL
    return CheckResult(Check.CLOUD_TLS, verdict,
                       f"{host}:{port} answered /healthz with HTTP {code} in {ms:.0f} ms")


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer (timed out): dropped on the way?"
    return (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).lower()


async def check_cascade_udp(reflector: Address, ports: range, local: str) -> CheckResult:
    """UDP from source ports spread over ``ports`` (both ends) to the reflector."""
    tried = sample_ports(ports)
    outcomes = await asyncio.gather(*(probe_udp(reflector, source=(local, p))
                                      for p in tried), return_exceptions=True)
    failed = [p for p, o in zip(tried, outcomes, strict=True) if not isinstance(o, Address)]
    to = f"from {reflector.host}:{reflector.port}"
    if not failed:
        return CheckResult(Check.CASCADE_UDP, Verdict.PASS,
                           f"{len(tried)} of {len(tried)} source ports of {span(ports)} "
                           f"got an answer {to} ({', '.join(map(str, tried))})")
    first = next(o for o in outcomes if not isinstance(o, Address))
    return CheckResult(Check.CASCADE_UDP, Verdict.FAIL,
                       f"{len(tried) - len(failed)} of {len(tried)} source ports of "
                       f"{span(ports)} got an answer {to}; not "
                       f"{', '.join(map(str, failed))}: "
                       f"{_why(first)}")


async def check_tcp(check: Check, target: Address, source: str | None = None) -> CheckResult:
    try:
        mapped = await probe_tcp(target, source=source)
    except (OSError, TimeoutError) as exc:
        return CheckResult(check, Verdict.FAIL, f"{target.host}:{target.port}: {_why(exc)}")
    return CheckResult(check, Verdict.PASS,
                       f"{target.host}:{target.port} answered (seen from {mapped.host})")


@dataclass
class ClientWatch:
    """The node's media ports, answering, while enterprise clients probe them."""

    node: str
    seen: dict[str, Address] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def saw(self, transport: str, source: Address) -> None:
        if source.host != self.node:  # the host's own probe proves nothing about clients
            self.seen.setdefault(transport, source)
        if len(self.seen) == 2:
            self.done.set()

    def results(self, window_s: float, udp_port: int, tcp_port: int) -> list[CheckResult]:
        out = []
        for check, transport, port in ((Check.CLIENTS_UDP, "udp", udp_port),
                                       (Check.CLIENTS_TCP, "tcp", tcp_port)):
            source = self.seen.get(transport)
            out.append(CheckResult(check, Verdict.PASS, f"{source.host} reached "
                                   f"{self.node} {transport.upper()} {port}")
                       if source is not None else CheckResult(
                           check, Verdict.FAIL, f"no client's probe reached {self.node} "
                           f"{transport.upper()} {port} in {window_s:g} s"))
        return out


# ----------------------------------------------------------------------------- the command


def _udp_port() -> int:
    return setting(5004, "preferred UDP media port", type=PORT)


def _tcp_port() -> int:
    return setting(5004, "TCP media port, RFC 4571 framing", type=PORT)


def _json() -> bool:
    return setting(False, "print one JSON document on stdout (errors too)")


@dataclass(frozen=True, slots=True)
class CheckFlags:
    """``reflector check``: from the node's host."""

    cloud: str = setting("", "the cloud's URL, e.g. https://cloud.example (its /healthz is "
                         "fetched over HTTPS)")
    ca: str = setting("", "the CA certificate the cloud's certificate chains to (default: "
                      "the system's)")
    reflector: str = setting("", "the reflector's address: the cloud side's 'reflector "
                             "serve' (check), or the node's host (probe)")
    advertise: str = setting("", "IP address clients reach this node on (the checks leave "
                             "from it, and --clients-s listens on it)")
    cascade_ports: range = setting(HYBRID_PORTS, "UDP source ports of cascades to the cloud "
                                   "(the standard 33434-33598; the older 8000-8100 also "
                                   "works)", type=PortRange(), show=port_span)
    clients_s: float = setting(0.0, "also answer on the node's media ports this long, for "
                               "enterprise clients' 'reflector probe' (0: skip that check)",
                               type=seconds(600, zero=True))
    udp_port: int = _udp_port()
    tcp_port: int = _tcp_port()
    json: bool = _json()


@dataclass(frozen=True, slots=True)
class ServeFlags:
    """``reflector serve``: the cloud side's reflector."""

    listen: str = setting("0.0.0.0", "address to bind")
    udp_port: int = _udp_port()
    tcp_port: int = _tcp_port()
    json: bool = _json()


@dataclass(frozen=True, slots=True)
class ProbeFlags:
    """``reflector probe``: from an enterprise client, to the node's host."""

    reflector: str = setting("", "the reflector's address: the cloud side's 'reflector "
                             "serve' (check), or the node's host (probe)")
    listen: str = setting("", "address to bind (default: the system's choice)")
    udp_port: int = _udp_port()
    tcp_port: int = _tcp_port()
    json: bool = _json()


_FLAGS: Final[dict[str, type[CheckFlags | ServeFlags | ProbeFlags]]] = {
    "check": CheckFlags, "serve": ServeFlags, "probe": ProbeFlags}
_HELP: Final = {
    "check": "from where the hybrid node will live, before enrolling it: HTTPS to the cloud, "
             "UDP from the cascade source ports and TCP 5004 to the reflector, and (with "
             "--clients-s) the enterprise's clients to the node's media ports; a verdict "
             "table and the firewall rules to add. Exit: 0 all passed, 6 degraded (some "
             "check failed), 4 no cascade (UDP and TCP failed), 3 no HTTPS to the cloud.",
    "serve": "the reflector the cloud side runs: answers STUN Binding Requests on UDP and "
             "TCP (RFC 4571) with the address they came from, until Ctrl-C",
    "probe": "from an enterprise client: probe the reflector's (the node host's) UDP and "
             "TCP media ports; exit 0 both answered, 6 one did, 4 none",
}


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=REFLECTOR_PROG, description=(
        "Pre-deployment checks of a hybrid node's network, run before enrolling it "
        "('check' on the node's host, 'probe' on a client, 'serve' on the cloud side). "
        "Every flag also reads PINHOLE_<FLAG> from the environment."))
    subs = p.add_subparsers(dest="command", required=True, metavar="{check,serve,probe}")
    for name, flags in _FLAGS.items():
        sub = subs.add_parser(name, help=_HELP[name], description=_HELP[name],
                              prog=f"{REFLECTOR_PROG} {name}")
        add_settings(sub, flags)
    return p


async def run_check(s: CheckFlags, progress: Callable[[str], None]) -> list[CheckResult]:
    results = []
    if s.cloud:
        progress(f"HTTPS to {s.cloud}")
        results.append(await check_cloud(s.cloud, s.ca or None))
    else:
        results.append(CheckResult(Check.CLOUD_TLS, Verdict.SKIPPED, "no --cloud"))
    if s.reflector:
        local = s.advertise or "0.0.0.0"
        progress(f"UDP from {span(s.cascade_ports)} and TCP to {s.reflector}")
        results.append(await check_cascade_udp(Address(s.reflector, s.udp_port),
                                               s.cascade_ports, local))
        results.append(await check_tcp(Check.CASCADE_TCP, Address(s.reflector, s.tcp_port),
                                       s.advertise or None))
    else:
        results += [CheckResult(c, Verdict.SKIPPED, "no --reflector")
                    for c in (Check.CASCADE_UDP, Check.CASCADE_TCP)]
    if s.clients_s > 0 and s.advertise:
        watch = ClientWatch(s.advertise)
        reflector = Reflector(watch.saw)
        await reflector.start(s.advertise, s.udp_port, s.tcp_port)
        progress(f"listening on {s.advertise} UDP {s.udp_port} and TCP {s.tcp_port} for "
                 f"{s.clients_s:g} s: run '{REFLECTOR_PROG} probe --reflector "
                 f"{s.advertise}' on an enterprise client")
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(s.clients_s):
                    await watch.done.wait()
        finally:
            await reflector.close()
        results += watch.results(s.clients_s, s.udp_port, s.tcp_port)
    else:
        why = "no --clients-s" if s.clients_s <= 0 else "no --advertise to listen on"
        results += [CheckResult(c, Verdict.SKIPPED, why)
                    for c in (Check.CLIENTS_UDP, Check.CLIENTS_TCP)]
    return results


async def run_probe(s: ProbeFlags) -> list[CheckResult]:
    udp: CheckResult
    target = Address(s.reflector, s.udp_port)
    source = s.listen or None
    try:
        mapped = await probe_udp(target, source=None if source is None else (source, 0))
        udp = CheckResult(Check.CLIENTS_UDP, Verdict.PASS,
                          f"{target.host}:{target.port} answered (seen from {mapped.host})")
    except (OSError, TimeoutError) as exc:
        udp = CheckResult(Check.CLIENTS_UDP, Verdict.FAIL,
                          f"{target.host}:{target.port}: {_why(exc)}")
    return [udp, await check_tcp(Check.CLIENTS_TCP, Address(s.reflector, s.tcp_port), source)]


async def serve(s: ServeFlags, out: Callable[[str], None]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reflector = Reflector()
    await reflector.start(s.listen, s.udp_port, s.tcp_port)
    udp_port, tcp_port = reflector.ports()
    out(json.dumps({"reflector": {"listen": s.listen, "udp_port": udp_port,
                                  "tcp_port": tcp_port}}) if s.json else
        f"reflecting STUN on {s.listen} UDP {udp_port} and TCP {tcp_port}; Ctrl-C stops")
    try:
        await stop.wait()
    finally:
        await reflector.close()
    return 0


def main(argv: Sequence[str]) -> int:
    """``pinhole-hybrid-node reflector ...`` inside the error boundary."""
    wants_json = "--json" in argv or os.environ.get("PINHOLE_JSON", "") in ("1", "true")

    def body() -> int:
        p = build_parser()
        for sub in _subcommands(p):
            apply_environment(sub, os.environ)
        a = p.parse_args(argv)
        if a.command == "serve":
            served = settings_from(ServeFlags, a)
            return asyncio.run(serve(served, lambda line: print(line, flush=True)))
        results, where, as_doc = (_check(settings_from(CheckFlags, a)) if a.command == "check"
                                  else _probe(settings_from(ProbeFlags, a)))
        if as_doc:
            print(json.dumps(as_json(results, where)), flush=True)
        else:
            print("\n".join(render(results, where)), flush=True)
        code = exit_code(results)
        if a.command == "probe" and all(r.verdict is Verdict.FAIL for r in results):
            code = boundary.ExitCode.NO_MEDIA
        return int(code)

    return boundary.run(REFLECTOR_PROG, body, as_json=lambda: wants_json, out=sys.stdout,
                        err=sys.stderr, traceback_wanted=boundary.traceback_wanted(os.environ))


def _subcommands(p: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    return [sub for action in p._actions if isinstance(action, argparse._SubParsersAction)
            for sub in dict.fromkeys(action.choices.values())]


def _progress(command: str) -> Callable[[str], None]:
    def say(line: str) -> None:
        print(f"{REFLECTOR_PROG} {command}: {line}", file=sys.stderr, flush=True)
    return say


def _check(s: CheckFlags) -> tuple[list[CheckResult], Where, bool]:
    if not (s.cloud or s.reflector or s.clients_s):
        raise boundary.usage("nothing to check", "pass --cloud URL, --reflector ADDRESS "
                             "and/or --clients-s N with --advertise")
    results = asyncio.run(run_check(s, _progress("check")))
    cloud = urlsplit(s.cloud)
    return results, Where(node=s.advertise, cloud=cloud.hostname or "",
                          reflector=s.reflector or "a cloud media node",
                          cascade_ports=s.cascade_ports, udp_port=s.udp_port,
                          tcp_port=s.tcp_port, cloud_port=cloud.port or 443), s.json


def _probe(s: ProbeFlags) -> tuple[list[CheckResult], Where, bool]:
    if not s.reflector:
        raise boundary.usage("probe needs --reflector ADDRESS: the node's host",
                             "pass --reflector (or set PINHOLE_REFLECTOR)")
    results = asyncio.run(run_probe(s))
    return results, Where(node=s.reflector, cloud="", reflector=s.reflector,
                          cascade_ports=HYBRID_PORTS, udp_port=s.udp_port,
                          tcp_port=s.tcp_port), s.json
