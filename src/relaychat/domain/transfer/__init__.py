"""Moving conversations out and in: export (our JSON, Markdown), import (ours, LibreChat,
ChatGPT)."""
