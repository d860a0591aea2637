"""A stack that cannot start says why in its own error.

Defect pinned down: ``make demo`` stopped with "media node node-near exited with code 1;
see /tmp/pinhole-…/*.log" and had already removed that temporary folder, so a new user was
sent to files that no longer existed. The error now quotes what the process last said.
"""

from __future__ import annotations

import pytest

from lab.stack import NodeSpec, StackError, running_stack


async def test_a_node_that_refuses_its_flags_is_quoted_in_the_error() -> None:
    broken = NodeSpec("node-bad", "eu", 0, extra_args=("--capacity", "0"))
    with pytest.raises(StackError) as caught:
        async with running_stack([broken]):
            pass  # never reached: the node exits at start
    message = str(caught.value)
    assert "media node node-bad exited with code 2" in message, message
    assert "--capacity" in message, message  # the node's own one-line reason
