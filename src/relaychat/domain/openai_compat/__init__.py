"""The use cases behind the OpenAI-compatible API: who calls, which models they may use, and
each call stored as a conversation of the caller's owner and answered by the generation runner."""
