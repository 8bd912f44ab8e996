"""`relaychat export` and `relaychat import`: a person's conversations to and from a file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.cli._common import console, error_exit, load_settings, run_in_session, servers_bus
from relaychat.cli._common import table as new_table
from relaychat.domain.accounts.users import find_user_by_email
from relaychat.domain.transfer import exporting, importing
from relaychat.domain.transfer.formats import recognise
from relaychat.errors import UserNotFound
from relaychat.storage.models import User

Owner = Annotated[str, typer.Option("--owner", help="The email of the conversations' owner.")]


async def _owner(session: AsyncSession, email: str) -> User:
    user = await find_user_by_email(session, email)
    if user is None:
        raise UserNotFound(f"no user with email {email}")
    return user


def export(
    owner: Owner,
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="The file to write; `-` writes to stdout."),
    ] = Path("relaychat-export.json"),
) -> None:
    """Write every conversation of a person (archived too) to one JSON file, the format
    `relaychat import` and POST /api/convos/import read back."""
    settings = load_settings()
    to_stdout = str(output) == "-"
    # The bar goes to stderr, so the file can go to stdout.
    bar_console = Console(stderr=True)

    async def work(session: AsyncSession) -> int:
        user = await _owner(session, owner)
        total = await exporting.count_conversations(session, user.id)
        written = 0
        target = sys.stdout.buffer if to_stdout else output.open("wb")
        try:
            with Progress(
                TextColumn("exporting"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=bar_console,
                transient=to_stdout,
            ) as progress:
                task = progress.add_task("export", total=total)

                def advance() -> None:
                    nonlocal written
                    written += 1
                    progress.advance(task)

                async for chunk in exporting.export_all(session, user.id, advance):
                    target.write(chunk)
        finally:
            if not to_stdout:
                target.close()
        return written

    written = run_in_session(settings, work)
    if not to_stdout:
        typer.echo(f"exported {written} conversations of {owner} to {output}")


def import_(
    path: Annotated[Path, typer.Argument(help="The file: relaychat's, LibreChat's or ChatGPT's.")],
    owner: Owner,
) -> None:
    """Import conversations for a person, each whole or not at all (the same rules as the
    API, without its upload size limit). Exit 1 if any was refused."""
    settings = load_settings()
    try:
        data = path.read_bytes()
    except OSError as exc:
        error_exit(f"cannot read {path}: {exc.strerror}", code=2)

    async def work(session: AsyncSession) -> importing.ImportReport:
        user = await _owner(session, owner)
        upload = recognise(data, settings.import_max_conversations)
        async with servers_bus(settings) as bus:
            return await importing.import_file(
                session, bus, user, upload, max_messages=settings.import_max_messages
            )

    report = run_in_session(settings, work)
    if report.imported:
        table = new_table("id", "from", "title", "messages")
        for done in report.imported:
            source = f"{done.source_id} (renamed)" if done.renamed else done.source_id or ""
            table.add_row(done.conversation_id, source, done.title or "", str(done.messages))
        console.print(table)
    for refused in report.refused:
        typer.secho(
            f"refused #{refused.index} {refused.source_id or ''}: {refused.code}: {refused.detail}",
            fg="red",
            err=True,
        )
    typer.echo(
        f"imported {len(report.imported)} of {len(report.imported) + len(report.refused)} "
        f"conversations ({report.format}) for {owner}"
    )
    if report.refused:
        raise typer.Exit(1)
