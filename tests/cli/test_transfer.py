"""`relaychat export` and `relaychat import`, run as an operator would: a person's
conversations to a file with a progress bar, and back in for someone else."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.backends import REDIS_PREFIX_ROOT, Backend
from tests.support.cli import make_users, relaychat_async
from tests.support.live import server_env

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


async def test_export_and_import_between_people(clean_backend: Backend, tmp_path: Path) -> None:
    env = server_env(clean_backend, tmp_path, f"{REDIS_PREFIX_ROOT}clitransfer:")
    await make_users(clean_backend, ("ann@example.com", False), ("ben@example.com", False))
    chatgpt = FIXTURES / "chatgpt" / "conversations.json"

    brought = await relaychat_async(env, "import", str(chatgpt), "--owner", "ann@example.com")
    assert brought.exit_code == 0, brought.stderr
    assert "6751b0f1-2c3d-8004-9e5f-a1b2c3d4e5f6" in brought.stdout
    assert brought.stdout.endswith("imported 2 of 2 conversations (chatgpt) for ann@example.com\n")

    out = tmp_path / "ann.json"
    exported = await relaychat_async(
        env, "export", "--owner", "ann@example.com", "--output", str(out)
    )
    assert exported.exit_code == 0, exported.stderr
    assert exported.stdout == f"exported 2 conversations of ann@example.com to {out}\n"
    assert "2/2" in exported.stderr  # the progress bar, on stderr
    document = json.loads(out.read_text())
    assert document["format"] == "relaychat.export"
    titles = [c["conversation"]["title"] for c in document["conversations"]]
    assert titles == ["Packing for Oslo", "Sourdough starter"]
    assert [len(c["messages"]) for c in document["conversations"]] == [7, 2]

    # To stdout, the file alone (the bar goes away on stderr).
    piped = await relaychat_async(env, "export", "--owner", "ann@example.com", "-o", "-")
    assert piped.exit_code == 0, piped.stderr
    assert [c["conversation"]["title"] for c in json.loads(piped.stdout)["conversations"]] == (
        titles
    )

    # Into Ben's account: the ids are Ann's, so his copies get new ones.
    moved = await relaychat_async(env, "import", str(out), "--owner", "ben@example.com")
    assert moved.exit_code == 0, moved.stderr
    assert "(renamed)" in moved.stdout
    assert moved.stdout.endswith("imported 2 of 2 conversations (relaychat) for ben@example.com\n")


async def test_import_reports_refusals_and_bad_input(
    clean_backend: Backend, tmp_path: Path
) -> None:
    env = server_env(clean_backend, tmp_path, f"{REDIS_PREFIX_ROOT}clitransfer2:")
    await make_users(clean_backend, ("cat@example.com", False))
    good = json.loads((FIXTURES / "librechat" / "export__flat.json").read_text())
    bad = {**good, "conversationId": "broken", "messages": [{"text": "no id"}]}
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps([good, bad]))

    result = await relaychat_async(env, "import", str(mixed), "--owner", "cat@example.com")
    assert result.exit_code == 1
    assert "refused #1 broken: import_conversation_invalid: a message has no `messageId`" in (
        result.stderr
    )
    assert result.stdout.endswith("imported 1 of 2 conversations (librechat) for cat@example.com\n")

    unknown = await relaychat_async(env, "import", str(mixed), "--owner", "nobody@example.com")
    assert unknown.exit_code == 1
    assert "no user with email nobody@example.com" in unknown.stderr

    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    refused = await relaychat_async(env, "import", str(garbage), "--owner", "cat@example.com")
    assert refused.exit_code == 1
    assert "the file is not JSON" in refused.stderr

    missing = await relaychat_async(
        env, "import", str(tmp_path / "nope.json"), "--owner", "cat@example.com"
    )
    assert missing.exit_code == 2
    assert "cannot read" in missing.stderr
