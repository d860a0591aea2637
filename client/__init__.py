"""Pinhole client library: register, discover, report, join, connect, media."""

from client.api import ApiError, CloudApi
from client.device import Device
from client.media import MediaError, MediaSession

__all__ = ["ApiError", "CloudApi", "Device", "MediaError", "MediaSession"]
