"""Full-text search over the caller's messages, conversation titles and external senders
(`GET /api/search`): the index is kept by database triggers (migration 0010)."""
