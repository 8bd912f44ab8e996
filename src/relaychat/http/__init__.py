"""HTTP plumbing shared by every front (`api/` for people, `gateway/` for machines, `web/`):
request dependencies (who is calling, which services), the one problem+json renderer,
the input-guarding middleware and the event-stream app served ahead of routing."""
