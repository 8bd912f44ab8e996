"""The machines' front door: every route an external system calls, and what they share.

- `routes.py` POST /api/external/messages (an API key posting by sender);
- `external.py` the external message request end to end: API-key authentication, rate
  limits, idempotency, accept, answer; also behind POST /api/messages/{conversation_id}
  when an `x-api-key` caller posts there (that path is shared with people, so its route
  stays in `api/messages.py` and hands such callers here);
- `channels/` other wire formats on the same pipeline: `channels/twilio/` Twilio's
  inbound SMS/WhatsApp and status-callback webhooks (POST /api/channels/twilio/...);
- `refusals.py` limits and audit of unauthenticated refusals; `request_audit.py` the audit
  row and metrics of every machine request; `schemas.py` the external bodies and answers.
"""
