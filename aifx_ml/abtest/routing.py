"""Which variant serves a request: a deterministic hash of (routing key, test id).

The same key always lands on the same variant of a test (a user sees one model), different
tests shuffle keys independently, and over many keys the share sent to B matches the split.
"""

from __future__ import annotations

import hashlib
import uuid

BUCKETS = 1 << 64


def bucket(routing_key: str, test_id: uuid.UUID | str) -> float:
    """A number in [0, 1) fixed by (key, test), uniform over keys."""
    digest = hashlib.sha256(f"{test_id}\0{routing_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / BUCKETS


def assign_variant(routing_key: str, test_id: uuid.UUID | str, traffic_split: float) -> str:
    """'b' (the challenger) for a `traffic_split` share of keys, 'a' (Production) otherwise."""
    return "b" if bucket(routing_key, test_id) < traffic_split else "a"
