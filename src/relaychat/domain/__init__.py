"""Use cases, one folder per capability; no web framework in here.

- `accounts/` users, phone numbers, passwords, sign-in sessions and tokens;
- `messaging/` conversations, their ids and messages, content parts, a model's context,
  titles, and sending a message (`chat.py`);
- `answering/` who answers (`replies.py`), generations, their runner and the agent loop
  (`agent_loop.py`);
- `agent/` agents, their cache, their tools (`toolbox.py`, `agent_tools.py`);
- `access/` API keys and their cache, idempotency, the audit trail (its batching writer and
  the keys' last-use writer are background tasks in `relaychat.workers`);
- `intake/` accepting an external message (`external.py`) and resolving its owner;
- `outbound/` webhooks, the transactional outbox and the callbacks a change queues;
- `telephony/` Twilio channels, their threads and their replies' delivery;
- `stats/` the live dashboard's numbers (`GET /api/stats`), read from what the others store.

Nothing here imports `relaychat.workers` or a front: what a use case needs of a background
task is handed in by Services (e.g. the key cache's `on_use`).

Shared leaves stay here: `ids.py`, `limits.py` (what may be stored), `merge_patch.py`
(every PATCH) and `publishing.py` (events published by a session's commit).
"""
