"""Pinhole client library: register, discover, report, join, connect, media.

``Device(api).call(meeting, CallOptions(...)) -> CallReport`` is the whole call
``pinhole call`` makes; the other names are its parts, for an app that drives
the steps itself.
"""

from client.api import CloudApi
from client.call import CallOptions, CallReport, CallSecond, Enrollment, RungAttempt
from client.device import Device
from client.errors import (
    ApiError,
    ClientError,
    InspectionError,
    MediaError,
    PinError,
    PinsError,
    ProxyError,
)
from client.media import MediaSession

__all__ = ["ApiError", "CallOptions", "CallReport", "CallSecond", "ClientError",
           "CloudApi", "Device", "Enrollment", "InspectionError", "MediaError",
           "MediaSession", "PinError", "PinsError", "ProxyError", "RungAttempt"]
