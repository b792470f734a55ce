"""Events: announced on Redis, written first to the outbox in the same transaction as the change."""
