"""Fuzzing of every parser and boundary: ``make fuzz`` (``python -m tests.fuzz``)."""
