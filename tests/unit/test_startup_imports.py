"""What a service imports to start (docs: README "Tests": a service imports only what its
start needs; the suite starts hundreds of them).

Defect pinned down: ``wire/stun.py`` imported aioice when loaded, which brings aioice's ICE
agent and dnspython (about 0.1 s of CPU a process), so every media node and cloud paid for
it, though a node answers only the fast path's requests and the cloud never meets STUN.
"""

from __future__ import annotations

import subprocess
import sys


def test_the_cloud_and_the_media_node_start_without_aioice() -> None:
    code = ("import sys, cloud.__main__, media_node.__main__; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aioice', 'dns')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_the_full_validator_still_uses_aioices_codec() -> None:
    """RFC 8489 §7.3: a request outside the fast path is parsed by aioice's codec, loaded
    on first use."""
    code = ("import sys; from wire.stun import known_required; known_required(); "
            "print('aioice.stun' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "True", done.stdout
