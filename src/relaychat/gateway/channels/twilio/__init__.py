"""Twilio's webhooks: inbound SMS/WhatsApp messages, and status callbacks of our replies.

Both are authenticated by `X-Twilio-Signature` alone (`webhook.py`). An inbound message
(`inbound.py`) is read as an external message (`message.py`) and accepted through the
same pipeline, permissions and owner resolution as an API key's; its reply goes out later
through the outbox (`relaychat.workers.twilio`), whose delivery reports come back to
`status.py`. `routes.py` holds the two routes.
"""
