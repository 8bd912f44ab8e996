"""Development helpers: a fake LLM upstream that speaks the providers' wire formats."""
