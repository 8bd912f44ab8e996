"""Use cases: accounts, sessions, conversations and messages; no web framework in here."""
