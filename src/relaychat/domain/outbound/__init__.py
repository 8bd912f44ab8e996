"""What goes out after a change: webhooks, the transactional outbox, the callbacks queued in it."""
