"""Conformance suites that every registered space and controller must pass (used by tests/)."""
