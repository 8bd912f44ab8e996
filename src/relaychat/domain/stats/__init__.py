"""The numbers of the live dashboard (`GET /api/stats`), read from the rows every worker
writes anyway: audit rows, generations and the outbox."""
