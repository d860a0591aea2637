"""The firewall lab: Linux network namespaces, veth pairs, NAT and an nftables profile.

    {run}-inet  198.18.0.0/24 (RFC 2544 benchmarking space: never routed outside)
                cloud .1, media nodes .2 .3 .4 (simulated RTT 10/40/90 ms), coturn .253
                (TURN over TLS on 443 beside the cloud's 443), gw .254
        |
    {run}-gw    the enterprise firewall: ip_forward, masquerade towards inet,
                stateful nftables (lab/profiles/<profile>.nft on lab/profiles/_base.nft),
                net.netfilter.nf_conntrack_udp_timeout (30 s, as the seed's pinholes)
        |
    {run}-ent   10.99.0.0/24: clients .2, the HTTP proxy host .3, the hybrid node's host .4
                (and .5, a second node of its cluster)
                (default route via the gw, 10.99.0.1); :meth:`Lab.start_hybrid` runs
                ``pinhole-hybrid-node`` there

Every name carries the run's prefix, so parallel runs never collide, and
:meth:`Lab.down` (also run by the context manager on every exit path) removes
the namespaces, and with them their veths, nftables tables and conntrack state.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lab import firewall
from lab.firewall import (
    CLIENT,
    ENT_PREFIX,
    GW_LAN,
    GW_WAN,
    HYBRID_HOST,
    HYBRID_HOST_2,
    INET_PREFIX,
    PROFILES,
    PROXY_HOST,
    LabError,
)
from lab.firewall import run as _run
from lab.turn import LAB_TURN_OCTET

__all__ = ["ENT_PREFIX", "GW_WAN", "HYBRID_HOST", "HYBRID_HOST_2", "HYBRID_ID", "INET_PREFIX",
           "PROFILES",
           "PROXY_HOST", "TURN_HOST", "Lab", "LabError", "lab", "leftovers"]
TINYPROXY_CONF = Path(__file__).resolve().parent / "proxy" / "tinyproxy.conf"
HYBRID_ID = "hybrid-acme"  # the lab's hybrid node (the stack's first org's)
#: the stack's coturn (lab.turn): an address of its own, so that it has 443 beside the cloud
TURN_HOST = f"{INET_PREFIX}.{LAB_TURN_OCTET}"


@dataclass
class Lab:
    profile: str = "open"
    run_id: str = field(default_factory=lambda: "ph" + secrets.token_hex(3))
    udp_timeout_s: int = 30
    #: the hybrid nodes running in the enterprise, by node id
    hybrids: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    @property
    def inet(self) -> str:
        return f"{self.run_id}-inet"

    @property
    def gw(self) -> str:
        return f"{self.run_id}-gw"

    @property
    def ent(self) -> str:
        return f"{self.run_id}-ent"

    @property
    def namespaces(self) -> tuple[str, str, str]:
        return self.inet, self.gw, self.ent

    def exec_prefix(self, namespace: str) -> list[str]:
        """Prefix a command with this to run it inside ``namespace``."""
        return ["ip", "netns", "exec", namespace]

    def up(self) -> None:
        r = self.run_id
        try:
            for ns in self.namespaces:
                _run("ip", "netns", "add", ns)
                _run("ip", "-n", ns, "link", "set", "lo", "up")
            # veth names are per namespace, but created in the root one first: keep them unique
            _run("ip", "link", "add", f"{r}a", "netns", self.inet, "type", "veth",
                 "peer", "name", f"{r}b", "netns", self.gw)
            _run("ip", "link", "add", f"{r}c", "netns", self.gw, "type", "veth",
                 "peer", "name", f"{r}d", "netns", self.ent)
            # the cloud, the three media nodes, coturn
            for octet in (1, 2, 3, 4, LAB_TURN_OCTET):
                _run("ip", "-n", self.inet, "addr", "add", f"{INET_PREFIX}.{octet}/24",
                     "dev", f"{r}a")
            _run("ip", "-n", self.gw, "addr", "add", f"{GW_WAN}/24", "dev", f"{r}b")
            _run("ip", "-n", self.gw, "addr", "add", f"{GW_LAN}/24", "dev", f"{r}c")
            for host in (CLIENT, PROXY_HOST, HYBRID_HOST, HYBRID_HOST_2):
                _run("ip", "-n", self.ent, "addr", "add", f"{host}/24", "dev", f"{r}d")
            for ns, dev in ((self.inet, f"{r}a"), (self.gw, f"{r}b"), (self.gw, f"{r}c"),
                            (self.ent, f"{r}d")):
                _run("ip", "-n", ns, "link", "set", dev, "up")
            _run("ip", "-n", self.ent, "route", "add", "default", "via", GW_LAN)
            _run("ip", "netns", "exec", self.gw, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            self.load_profile(self.profile)
            self.set_udp_timeout(self.udp_timeout_s)
        except BaseException:
            self.down()
            raise

    def load_profile(self, profile: str) -> None:
        self.profile = profile
        firewall.load(profile, f"{self.run_id}c", f"{self.run_id}b", self.exec_prefix(self.gw))

    def set_udp_timeout(self, seconds: int) -> None:
        """The gateway's UDP pinhole lifetime (seed: "usually closed after 30 seconds")."""
        self.udp_timeout_s = seconds
        firewall.set_udp_timeout(seconds, self.exec_prefix(self.gw))

    def refresh_on_outbound_only(self, seconds: int) -> None:
        """UDP pinholes close ``seconds`` after the last packet from inside, whatever comes in
        (until the next profile is loaded)."""
        firewall.refresh_on_outbound_only(seconds, f"{self.run_id}c", f"{self.run_id}b",
                                          self.exec_prefix(self.gw))

    def counter(self, name: str, unit: str = "packets", table: str = "pinhole_fw") -> int:
        """Packets (or ``unit="bytes"``) counted by a named nftables counter in the firewall."""
        text = _run("ip", "netns", "exec", self.gw, "nft", "list", "counter", "inet",
                    table, name)
        for word, value in zip(text.split(), text.split()[1:], strict=False):
            if word == unit:
                return int(value)
        return 0

    def start_hybrid(self, state_dir: Path, *extra_args: str,
                     progress: Callable[[str], None] = lambda _: None,
                     timeout_s: float = 30.0, node_id: str = HYBRID_ID,
                     host: str = HYBRID_HOST) -> dict[str, object]:
        """``pinhole-hybrid-node`` on an enterprise host (``host``: the hybrid host .4, or
        .5 for a second node of a cluster), behind the gateway's NAT, for the org of the
        stack in ``state_dir``; return its state file once registered. Seed: "You can
        install this image anywhere in your network, even behind Network Address
        Translation (NAT)"."""
        stack = json.loads((state_dir / "stack.json").read_text())
        org = next(iter(stack["orgs"]))
        state_file = state_dir / f"{node_id}.json"
        state_file.unlink(missing_ok=True)
        self.stop_hybrid(node_id=node_id)
        with (state_dir / f"{node_id}.log").open("ab") as log:
            proc = self.hybrids[node_id] = subprocess.Popen(
                [*self.exec_prefix(self.ent), sys.executable, "-m", "hybrid_node",
                 "--cloud", stack["cloud"], "--ca", stack["ca"], "--org", org,
                 "--node-secret-file", str(state_dir / f"hybrid-secret-{org}"),
                 "--node-id", node_id, "--advertise", host,
                 "--metrics-listen", f"{host}:9100", "--state-file", str(state_file),
                 *extra_args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        progress(f"starting hybrid node {node_id} of {org} on {host} in {self.ent}")
        deadline = time.monotonic() + timeout_s
        while not state_file.exists():
            if proc.poll() is not None:
                raise LabError(f"the hybrid node exited with code {proc.returncode}; "
                               f"see {state_dir}/{node_id}.log")
            if time.monotonic() > deadline:
                raise LabError(f"the hybrid node did not register in {timeout_s:.0f} s; "
                               f"see {state_dir}/{node_id}.log")
            time.sleep(0.1)
        time.sleep(0.5)  # registered: its control channel follows at once
        info: dict[str, object] = json.loads(state_file.read_text())
        progress(f"hybrid node {node_id} registered")
        return info

    def stop_hybrid(self, sig: int = signal.SIGTERM, *, node_id: str | None = None) -> None:
        """Stop a hybrid node (``node_id``; None: every one; ``SIGKILL``: it fails
        mid-meeting)."""
        for each in [node_id] if node_id is not None else list(self.hybrids):
            proc = self.hybrids.pop(each, None)
            if proc is not None and proc.poll() is None:
                proc.send_signal(sig)
                proc.wait(timeout=10)

    def start_stack(self, state_dir: Path, progress: Callable[[str], None] = lambda _: None,
                    timeout_s: float = 60.0) -> Path:
        """Start ``pinhole-lab stack`` in the internet namespace, detached (``down`` stops it);
        return its ``stack.json`` once every node is healthy."""
        state_dir.mkdir(parents=True, exist_ok=True)
        stack_json = state_dir / "stack.json"
        stack_json.unlink(missing_ok=True)
        with (state_dir / "lab-stack.log").open("wb") as log:
            proc = subprocess.Popen(
                [*self.exec_prefix(self.inet), sys.executable, "-m", "lab", "stack", "--prefix",
                 INET_PREFIX, "--state-dir", str(state_dir)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        progress(f"starting the cloud and three media nodes in {self.inet}")
        deadline = time.monotonic() + timeout_s
        while not stack_json.exists():
            if proc.poll() is not None:
                raise LabError(f"the stack exited with code {proc.returncode}; "
                               f"see {state_dir}/lab-stack.log")
            if time.monotonic() > deadline:
                raise LabError(f"the stack did not come up in {timeout_s:.0f} s; "
                               f"see {state_dir}/lab-stack.log")
            time.sleep(0.1)
        described = json.loads(stack_json.read_text())
        progress(f"stack ready: {described['cloud']}")
        token = stack_json.parent / "operator-token"
        if token.exists():
            progress(f"operator console: {described['cloud']}/ (operator token "
                     f"{token.read_text().strip()})")
        return stack_json

    def start_proxy(self) -> None:
        """tinyproxy on the enterprise's proxy host (port 8888; CONNECT to 443 only)."""
        _run(*self.exec_prefix(self.ent), "tinyproxy", "-c", str(TINYPROXY_CONF))

    def down(self) -> None:
        """Kill what runs inside, then delete the namespaces (veths and tables go with them)."""
        remove_namespaces(self.namespaces)


def remove_namespaces(names: Sequence[str]) -> None:
    """SIGKILL every process still inside ``names`` (``ip netns del`` alone would leave them
    running), then delete the namespaces."""
    for ns in names:
        with contextlib.suppress(LabError, FileNotFoundError):
            for pid in _run("ip", "netns", "pids", ns).split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        with contextlib.suppress(LabError):
            _run("ip", "netns", "del", ns)


@contextlib.contextmanager
def lab(profile: str = "open", *, udp_timeout_s: int = 30) -> Iterator[Lab]:
    """``with lab("no-udp") as fw:`` — a lab that is always torn down."""
    running = Lab(profile=profile, udp_timeout_s=udp_timeout_s)
    running.up()
    try:
        yield running
    finally:
        running.down()


def leftovers(prefixes: Sequence[str]) -> list[str]:
    """Namespaces still present whose names start with one of ``prefixes``."""
    names = [line.split()[0] for line in _run("ip", "netns", "list").splitlines() if line]
    return [n for n in names if n.startswith(tuple(prefixes))]
