"""Pinhole cloud: signaling and registration API, node registry, assignment."""

from cloud.app import make_app
from cloud.assignment import Assignment, assign
from cloud.errors import CloudError, NoCandidate
from cloud.settings import CloudSettings

__all__ = ["Assignment", "CloudError", "CloudSettings", "NoCandidate", "assign", "make_app"]
