"""relaychat: a self-hosted chat server for people, LLMs, agents and external systems."""

__version__ = "0.1.0"
