"""Pinhole benchmarks: machine-readable figures, each compared with a peer in the same run."""
