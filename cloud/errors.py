"""The exception tree of the cloud's core.

    CloudError                root: every refusal or failure the cloud's core raises
    ├── StoreUnavailable      store_unavailable: the store does not answer
    ├── NoCandidate           no_media_node: no node can take this device
    │   └── PrivateMeetingUnreachable  private_meeting_unreachable: a private meeting, and
    │                         the device reached no node of the org's clusters with room
    ├── NodeUnavailable       node_unavailable: the node has no control channel, or is silent
    ├── IdentityError         unauthorized: a token missing, malformed, expired or revoked
    ├── OperatorRequired      operator_required: the console without the operator credential
    ├── Forbidden             forbidden: a device asks for another device's data
    ├── NotFound              not_found: no such meeting, participant, node or report
    ├── Conflict              conflict: an id taken by another org, or state moved on
    ├── ProbeRequired         probe_required: no fresh reachability report to place by
    ├── TooManyStreams        too_many_websockets: a device holds its cap of event streams
    ├── TurnUnavailable       turn_unavailable: this cloud has no TURN server configured
    ├── UnreadableRequest     invalid_body, too_deep, invalid_json, …: a body it cannot take
    │   └── BodyTooLarge      too_large: a body past the size bound
    └── WrongMediaType        unsupported_media_type, form_expected: a body of the wrong type

Each carries a ``code``, the stable machine string of the API's error answers
(``{"error": code, "detail": detail}``), and a message. Nothing here knows
HTTP: the HTTP edge (:mod:`cloud.http`) maps each class to a status, in one
table.
"""

from __future__ import annotations

from wire.models import AssignmentReason


class CloudError(Exception):
    """Root of every error the cloud's core raises.

    ``code`` is the class's unless one is given (a family such as
    :class:`UnreadableRequest` names the exact reason).
    """

    code: str = "internal"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def detail(self) -> str:
        """What an answer may tell the caller: the message, unless it holds internals."""
        return str(self)


class StoreUnavailable(CloudError):
    """The store cannot be reached or failed; the caller may try again later.

    The message names the backend's failure, for the log; callers are told less.
    """

    code = "store_unavailable"

    @property
    def detail(self) -> str:
        return "the cloud's store does not answer; try again shortly"


class NoCandidate(CloudError):
    """No node can take this device; the reason lists why each was excluded."""

    code = "no_media_node"

    def __init__(self, reason: AssignmentReason | None, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PrivateMeetingUnreachable(NoCandidate):
    """A private meeting keeps all media on its org's clusters: a device that reached no
    node of them with room is refused, never placed on the cloud."""

    code = "private_meeting_unreachable"


class NodeUnavailable(CloudError):
    """The node has no control channel, or did not answer in time."""

    code = "node_unavailable"


class IdentityError(CloudError):
    """A credential was missing, malformed, expired or revoked (or the organisations
    file that credentials are checked against is wrong)."""

    code = "unauthorized"


class OperatorRequired(CloudError):
    """The console and its data need the operator credential."""

    code = "operator_required"


class Forbidden(CloudError):
    """An authenticated device asked for what is not its own."""

    code = "forbidden"


class NotFound(CloudError):
    """No such meeting, participant, node or fresh report (for this caller)."""

    code = "not_found"


class Conflict(CloudError):
    """The id is taken by someone else, or the state moved on since the caller looked."""

    code = "conflict"


class ProbeRequired(CloudError):
    """No fresh reachability report for the device: it probes and reports first."""

    code = "probe_required"


class TooManyStreams(CloudError):
    """The device already holds as many event WebSockets as it may."""

    code = "too_many_websockets"


class TurnUnavailable(CloudError):
    """No TURN server (or no secret shared with one) is configured: there is nothing to
    mint a credential for."""

    code = "turn_unavailable"


class UnreadableRequest(CloudError):
    """A request body the cloud cannot take: not UTF-8, not JSON, too deep, not the
    model's shape (``code`` names which)."""

    code = "invalid_body"


class BodyTooLarge(UnreadableRequest):
    """A request body past the size bound."""

    code = "too_large"


class WrongMediaType(CloudError):
    """A body sent as another media type than the route reads."""

    code = "unsupported_media_type"
