"""Pinhole hybrid media node: an on-prem node that only ever connects outward.

It reuses ``media_node``'s engine; its own behaviour (org scope, local-first,
cascade to the cloud) is not built yet.
"""
