"""API access: keys and their cache, idempotency, and the audit trail of external requests."""
