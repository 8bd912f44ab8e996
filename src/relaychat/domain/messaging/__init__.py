"""Conversations and their messages: ids, content, context for a model, titles, and sending."""
