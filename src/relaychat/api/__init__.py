"""HTTP routes for people: auth, profile, conversations, messages, health."""
