"""`relaychat webhooks` (being written)."""

from __future__ import annotations

import typer

webhooks_app = typer.Typer(help="Manage webhook endpoints.")
