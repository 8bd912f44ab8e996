"""One adapter per wire protocol: OpenAI chat completions, Anthropic messages, Gemini."""
