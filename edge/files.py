"""pydantic models for the files Pinhole reads back from disk.

``stack.json`` (written by ``pinhole-lab stack``; read by ``pinhole --stack``)
and the client's caches (its device identity, its probe reports) are input
like any other: a file that does not match is a clear error (stack.json) or
is set aside and rebuilt (a cache), never a ``KeyError`` deep inside.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wire.models import Id, ReachabilityReport

Url = Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^https?://[^\s/]+")]
Pin = Annotated[str, Field(pattern=r"^sha256/[A-Za-z0-9+/]{43}=$")]  # RFC 7469 §2.4


class StackOrg(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    enrollment_key: str = Field(min_length=1, max_length=512)


class StackFile(BaseModel):
    """``stack.json``: the cloud's URL, the CA to trust, the cloud's pins, each organisation's
    enrollment key."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    cloud: Url
    ca: str = Field(default="", max_length=4096)
    orgs: dict[Id, StackOrg] = Field(min_length=1, max_length=1000)
    #: the cloud's SPKI pins, primary and backup (RFC 7469 §2.4, §4.3): the client pins these
    pins: list[Pin] = Field(default_factory=list, max_length=16)


class IdentityFile(BaseModel):
    """The client's identity cache: the device id this client registered as. ``pin`` is read
    (older clients wrote the key the cloud presented) and never used: pins come from the
    enrollment material."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: Id
    pin: Pin | None = None


class ReportFile(BaseModel):
    """A cached probe report of one device on one network."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: Id
    network: str = Field(max_length=256)
    stored_at: float
    expires_at: float
    report: ReachabilityReport


def first_problem(exc: ValidationError) -> str:
    """The first validation error as ``field: reason`` (``(top)`` for the document itself)."""
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in error["loc"]) or "(top)"
    return f"{where}: {error['msg'].lower()}"
