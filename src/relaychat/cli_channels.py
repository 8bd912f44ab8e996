"""`relaychat channels` (placeholder; being written)."""

from __future__ import annotations

import typer

channels_app = typer.Typer(help="Manage inbound channels (Twilio SMS and WhatsApp).")
