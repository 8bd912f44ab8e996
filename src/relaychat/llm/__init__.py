"""LLM endpoints: provider-neutral request and event types, the endpoint registry, adapters."""
