"""A join answer (``wire.models.Joined``) for tests that drive a call or its content
without a cloud: a node at 192.0.2.1 (TEST-NET-1) with one rung, fresh keys."""

from __future__ import annotations

import secrets

from pydantic import SecretStr

from wire.models import (
    AssignmentReason,
    Endpoint,
    IceCredentials,
    Joined,
    NodeInfo,
    SrtpParams,
)
from wire.srtp import SrtpKeys
from wire.transports import RungName, Transport


def joined(node_id: str = "n1", *, participant: str = "p-1",
           rung: RungName = RungName.UDP_5004, transport: Transport = Transport.UDP,
           rule: str = "test") -> Joined:
    node = NodeInfo(id=node_id, kind="cloud", region="test", address="192.0.2.1",
                    endpoints=[Endpoint(rung=rung, transport=transport, port=5004)])
    return Joined(
        meeting_id="m", participant_id=participant, node=node, plan=list(node.endpoints),
        ice=IceCredentials(node_ufrag=secrets.token_hex(4), client_ufrag=secrets.token_hex(4),
                           pwd=SecretStr("x" * 22)),
        srtp=SrtpParams(profile="AES_CM_128_HMAC_SHA1_80",
                        client_to_node=SecretStr(SrtpKeys.generate().to_b64()),
                        node_to_client=SecretStr(SrtpKeys.generate().to_b64())),
        ssrc=7, reason=AssignmentReason(chosen=node_id, rule=rule, candidates=[]))
