"""External systems' front door: API-key authentication, rate limits, idempotency, audit."""
