"""Pinhole cloud: signaling and registration API, node registry, assignment."""

from cloud.app import make_app
from cloud.assignment import Assignment, NoCandidate, assign
from cloud.settings import CloudSettings

__all__ = ["Assignment", "CloudSettings", "NoCandidate", "assign", "make_app"]
