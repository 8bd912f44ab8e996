"""Background work of a server process: delivering the outbox's callbacks, purging old rows."""
