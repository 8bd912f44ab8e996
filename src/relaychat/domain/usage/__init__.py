"""Token usage: counting each reply's tokens, reporting them, and per-key daily budgets."""
