"""The `relaychat` command: serve, database migrations and management of the stored objects.

One module per command group; `_common` holds what they share. Only `serve` and
`db upgrade` migrate the database: the management commands refuse a database that is not
at this release's schema.
"""

from __future__ import annotations

import typer

from relaychat.cli.agents import agents_app
from relaychat.cli.channels import channels_app
from relaychat.cli.db import db_app
from relaychat.cli.dev import dev_app
from relaychat.cli.doctor import doctor
from relaychat.cli.keys import keys_app
from relaychat.cli.schedules import schedules_app
from relaychat.cli.search import search_app
from relaychat.cli.serve import serve
from relaychat.cli.transfer import export, import_
from relaychat.cli.users import users_app
from relaychat.cli.webhooks import webhooks_app

app = typer.Typer(
    help="relaychat: chat server for people, LLMs, agents and external systems.",
    pretty_exceptions_show_locals=False,
)
app.command()(serve)
app.command()(doctor)
app.command("export")(export)
app.command("import")(import_)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(agents_app, name="agents")
app.add_typer(keys_app, name="keys")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(channels_app, name="channels")
app.add_typer(search_app, name="search")
app.add_typer(schedules_app, name="schedules")
app.add_typer(dev_app, name="dev")

__all__ = ["app", "main"]


def main() -> None:
    """The console script's entry point (also `python -m relaychat`)."""
    app()
