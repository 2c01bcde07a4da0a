"""Test doubles for bmad-api (stdlib only)."""

from tests.fakes.upstream import FAULT_NAMES, KINDS, FakeUpstream, RecordedRequest

__all__ = ["FakeUpstream", "RecordedRequest", "FAULT_NAMES", "KINDS"]
