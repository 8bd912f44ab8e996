"""The OpenAI-compatible API under /v1: what `openai` SDKs and "OpenAI-compatible" tools call.

- `app.py` the /v1 application mounted into the main app, with its own error handlers;
- `errors.py` every error on /v1 in OpenAI's shape (`{"error": {message, type, param, code}}`);
- `callers.py` authentication (an API key or a person's access token), rate limit, audit;
- `schemas.py` the chat completion request, checked and turned into a domain `Call`;
- `models.py` GET /v1/models; `chat_completions.py` POST /v1/chat/completions.
"""
