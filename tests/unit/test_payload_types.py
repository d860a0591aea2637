"""The meeting's payload types (wire/payload_types.py) and the mutation run's reach.

An SDP ``a=rtpmap`` names a codec by its media subtype, case-insensitively (RFC 4855), with
its clock rate and, for audio, a channel count that defaults to one (RFC 8866 §6.6); the
meeting's codec is found by all three, never by the offerer's payload type number
(RFC 3264 §6.1: the answer keeps those). And the README's promise that ``make mutate``
covers every module of ``wire/`` with logic in it (all but ``address.py`` and
``errors.py``) is checked here.
"""

from __future__ import annotations

from pathlib import Path

from tests.mutate import TARGETS
from wire.payload_types import BY_PAYLOAD_TYPE, MEETING_CODECS, OPUS, PCMU, VP8, meeting_codec

ROOT = Path(__file__).resolve().parents[2]


def test_a_codec_is_found_by_name_clock_and_channels() -> None:
    assert meeting_codec("opus", 48000, 2) is OPUS
    assert meeting_codec("OPUS", 48000, 2) is OPUS
    assert meeting_codec("opus", 48000, 1) is None  # opus is always signalled as /2
    assert meeting_codec("PCMU", 8000) is PCMU and meeting_codec("pcmu", 8000, 1) is PCMU
    assert meeting_codec("VP8", 90000) is VP8
    assert meeting_codec("VP8", 48000) is None and meeting_codec("H264", 90000) is None


def test_the_table_is_one_number_per_codec() -> None:
    assert len({c.payload_type for c in MEETING_CODECS}) == len(MEETING_CODECS)
    assert all(BY_PAYLOAD_TYPE[c.payload_type] is c for c in MEETING_CODECS)
    assert all(0 <= c.payload_type <= 127 for c in MEETING_CODECS)


def test_make_mutate_covers_every_wire_module_with_logic() -> None:
    modules = {f"wire/{p.name}" for p in (ROOT / "wire").glob("*.py")}
    declaring = {"wire/__init__.py", "wire/address.py", "wire/errors.py"}
    assert modules - declaring <= set(TARGETS)
    for tests in TARGETS.values():
        assert all((ROOT / t).exists() for t in tests), tests
