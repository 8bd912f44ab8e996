"""Share links: read-only snapshots of a conversation's branch, opened by an unguessable
token without signing in (`POST /api/convos/{id}/shares`, `GET /s/{token}`)."""
