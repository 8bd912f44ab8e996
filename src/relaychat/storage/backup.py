"""Backups of the embedded SQLite database, with the secrets the data dir keeps, as one archive.

A backup is only worth having if it can be read: the webhook and channel secrets in the
database are encrypted with the data dir's `encryption_key`, and every session token is
signed with its `jwt_secret`. So the archive holds the database and those two files (when
they are files: keys set in the environment are the operator's to keep).

The copy is made with SQLite's online backup API while the server writes: one backup step
reads a consistent snapshot under a read transaction, which in WAL mode never blocks a writer.
A restore refuses while a server holds the database's serving lock, and moves what it
replaces aside instead of deleting it.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import sqlite3
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from relaychat import __version__
from relaychat.storage import migrate

ARCHIVE_DB = "relaychat.db"
MANIFEST = "manifest.json"
# The files Settings keeps in the data dir when the environment does not set them.
KEPT_SECRETS = ("jwt_secret", "encryption_key")
FORMAT = 1


class BackupError(Exception):
    """A backup or restore that cannot be made; the message says why, for an operator."""


@dataclass(frozen=True)
class BackupReport:
    archive: Path
    database_bytes: int
    revision: str
    secrets: tuple[str, ...]
    # Kept secrets with no file in the data dir: set in the environment, not in the archive.
    secrets_not_included: tuple[str, ...]


@dataclass(frozen=True)
class RestoreReport:
    database: Path
    revision: str
    created_at: str
    secrets: tuple[str, ...]
    # What was in the way, renamed rather than deleted.
    moved_aside: tuple[Path, ...]


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


@contextlib.contextmanager
def serving(database: Path) -> Iterator[None]:
    """Held by a server for as long as it runs on `database` (shared: workers and hosts of
    one file may overlap); a restore takes it exclusively, so neither runs during the other."""
    with _lock(database, fcntl.LOCK_SH, f"a restore into {database} is under way; start after it"):
        yield


@contextlib.contextmanager
def _lock(database: Path, kind: int, refusal: str) -> Iterator[None]:
    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with lock_path(database).open("a") as handle:
        try:
            fcntl.flock(handle, kind | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(refusal) from None
        # Released by the kernel when the process ends, however it ends (kill -9 included).
        yield


def backup(database: Path, data_dir: Path, archive: Path) -> BackupReport:
    """Write a consistent copy of `database` and the data dir's kept secrets to `archive`."""
    if not database.is_file():
        raise BackupError(f"no database at {database}")
    if archive.exists() and archive.is_dir():
        raise BackupError(f"{archive} is a directory; give the archive's file name")
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=archive.parent, prefix=".relaychat-backup-") as work:
        copy = Path(work) / ARCHIVE_DB
        _online_copy(database, copy)
        copy.chmod(0o600)
        revision = _revision(copy)
        secrets = tuple(name for name in KEPT_SECRETS if (data_dir / name).is_file())
        manifest = {
            "format": FORMAT,
            "relaychat": __version__,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "revision": revision,
            "secrets": list(secrets),
        }
        partial = Path(work) / "archive.tar.gz"
        # Private from the first byte: the archive holds the keys to every stored secret.
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=2).encode())
            tar.add(copy, arcname=ARCHIVE_DB, recursive=False)
            for name in secrets:
                _add_bytes(tar, name, (data_dir / name).read_bytes())
        # Whole or not at all: an interrupted backup never leaves a truncated archive behind.
        os.replace(partial, archive)
        return BackupReport(
            archive=archive,
            database_bytes=copy.stat().st_size,
            revision=revision,
            secrets=secrets,
            secrets_not_included=tuple(name for name in KEPT_SECRETS if name not in secrets),
        )


def restore(archive: Path, database: Path, data_dir: Path) -> RestoreReport:
    """Put `archive`'s database (and secrets) in place of `database` (and the data dir's)."""
    if not archive.is_file():
        raise BackupError(f"no backup at {archive}")
    refusal = f"a server is running on {database}: stop it before restoring"
    with (
        _lock(database, fcntl.LOCK_EX, refusal),
        tempfile.TemporaryDirectory(dir=database.parent, prefix=".relaychat-restore-") as work,
    ):
        manifest, secrets = _unpack(archive, Path(work))
        staged = Path(work) / ARCHIVE_DB
        revision = _revision(staged)
        if not migrate.known_revision(revision):
            raise BackupError(
                f"the backup's schema ({revision}) is not one this release knows: it was made "
                "by a newer relaychat"
            )
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        moved: list[Path] = []
        # The database with its WAL and shared-memory files: a WAL may hold committed pages
        # not yet copied into the main file, so they move together or the old data is torn.
        for suffix in ("", "-wal", "-shm"):
            current = database.with_name(database.name + suffix)
            if current.exists():
                aside = database.with_name(f"{database.name}.before-restore-{stamp}{suffix}")
                current.rename(aside)
                moved.append(aside)
        # As private as the data dir's own database (sqlite3 made the file with the umask's).
        staged.chmod(0o600)
        os.replace(staged, database)
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name, value in secrets.items():
            target = data_dir / name
            if target.exists():
                if target.read_bytes() == value:
                    continue
                aside = data_dir / f"{name}.before-restore-{stamp}"
                target.rename(aside)
                moved.append(aside)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(value)
        return RestoreReport(
            database=database,
            revision=revision,
            created_at=str(manifest.get("created_at", "")),
            secrets=tuple(secrets),
            moved_aside=tuple(moved),
        )


def _online_copy(database: Path, target: Path) -> None:
    source = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    try:
        destination = sqlite3.connect(target)
        try:
            # pages=-1 (the default): the whole database in one step, under one read
            # transaction, so the copy is one moment's state even while the server commits.
            source.backup(destination)
        finally:
            destination.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy {database}: {exc}") from exc
    finally:
        source.close()


def _revision(database: Path) -> str:
    connection = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    try:
        check = connection.execute("PRAGMA quick_check").fetchone()
        if check is None or check[0] != "ok":
            raise BackupError(f"the database copy is damaged: {check}")
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"not a relaychat database: {exc}") from exc
    finally:
        connection.close()
    if row is None:
        raise BackupError("the database was never migrated")
    return str(row[0])


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = int(datetime.now(UTC).timestamp())
    tar.addfile(info, io.BytesIO(data))


def _unpack(archive: Path, work: Path) -> tuple[dict[str, object], dict[str, bytes]]:
    """The manifest and secrets, with the database written to `work`. Only the names a backup
    writes are read, as regular files: nothing in an archive picks a path of its own."""
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            members = {member.name: member for member in tar.getmembers() if member.isfile()}
            if MANIFEST not in members or ARCHIVE_DB not in members:
                raise BackupError(f"{archive} is not a relaychat backup (no manifest or database)")
            manifest = json.loads(_read(tar, members[MANIFEST]).read())
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise BackupError(f"{archive} is a backup format this release does not read")
            with (work / ARCHIVE_DB).open("wb") as out:
                source = _read(tar, members[ARCHIVE_DB])
                while chunk := source.read(1 << 20):
                    out.write(chunk)
            secrets = {
                name: _read(tar, members[name]).read() for name in KEPT_SECRETS if name in members
            }
    except (tarfile.TarError, OSError, json.JSONDecodeError) as exc:
        raise BackupError(f"cannot read {archive}: {exc}") from exc
    return manifest, secrets


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    handle = tar.extractfile(member)
    if handle is None:
        raise BackupError(f"cannot read {member.name} from the archive")
    return handle
