"""Agents: their definitions and cache, the tools they get and relaychat's own tools."""
