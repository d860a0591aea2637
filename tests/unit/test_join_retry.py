"""``Device.join`` does what a ``503 node_unavailable`` answer says: it joins again.

The defect it pins down: under ``docker compose`` on a loaded machine, node-near's control
channel was reconnecting when a client joined; the cloud answered "node node-near has no
control channel; try joining again" and the client gave up, failing its call. The
retries run on a fake clock: no verdict waits on real time.
"""

from __future__ import annotations

import pytest

from client.api import CloudApi
from client.device import JOIN_RETRY_PAUSES_S, Device
from client.errors import ApiError
from tests.joins import joined
from wire.models import Joined, JoinRequest


class ScriptedJoins(CloudApi):
    """A cloud whose join answers are ``errors`` in turn, then a seat."""

    def __init__(self, *errors: ApiError) -> None:
        super().__init__("https://192.0.2.9", None)
        self.errors = list(errors)
        self.joins = 0

    async def join(self, meeting_id: str, request: JoinRequest | None = None) -> Joined:
        self.joins += 1
        if self.errors:
            raise self.errors.pop(0)
        return joined(rule="lowest-score")


class FakeClock:
    def __init__(self) -> None:
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def _unavailable() -> ApiError:
    return ApiError(503, "node_unavailable",
                    "node node-near has no control channel; try joining again")


async def test_a_join_the_chosen_node_did_not_take_is_tried_again() -> None:
    cloud, clock = ScriptedJoins(_unavailable(), _unavailable()), FakeClock()
    joined = await Device(cloud, sleep=clock.sleep).join("m")
    assert joined.participant_id == "p-1"
    assert cloud.joins == 3 and clock.slept == list(JOIN_RETRY_PAUSES_S[:2])


async def test_the_tries_are_bounded_and_the_last_answer_is_raised() -> None:
    cloud = ScriptedJoins(*(_unavailable() for _ in range(len(JOIN_RETRY_PAUSES_S) + 1)))
    clock = FakeClock()
    with pytest.raises(ApiError) as raised:
        await Device(cloud, sleep=clock.sleep).join("m")
    assert raised.value.code == "node_unavailable"
    assert cloud.joins == len(JOIN_RETRY_PAUSES_S) + 1
    assert clock.slept == list(JOIN_RETRY_PAUSES_S)


@pytest.mark.parametrize(("status", "code"), [(503, "no_media_node"), (404, "no_such_meeting"),
                                              (409, "private_meeting_unreachable")])
async def test_other_refusals_are_not_tried_again(status: int, code: str) -> None:
    cloud, clock = ScriptedJoins(ApiError(status, code, "no")), FakeClock()
    with pytest.raises(ApiError) as raised:
        await Device(cloud, sleep=clock.sleep).join("m")
    assert (raised.value.code, cloud.joins, clock.slept) == (code, 1, [])
