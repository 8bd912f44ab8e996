"""`relaychat channels` and `relaychat dev twilio-sign`, run as an operator would."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import httpx
import pytest
import typer

from relaychat.cli import channels as cli_channels
from relaychat.devtools.fake_llm import FakeLLM
from relaychat.devtools.fake_twilio import FakeTwilio
from relaychat.settings import Settings
from tests.support.backends import REDIS_PREFIX_ROOT, Backend
from tests.support.cli import relaychat_async as relaychat
from tests.support.factories import make_user
from tests.support.live import server_env
from tests.support.settings import twilio_settings
from tests.support.twilio import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    OUR_NUMBER,
    SENDER,
    fixture_form,
    post_signed,
    sent_messages,
    sign,
)


@pytest.fixture
def settings(backend: Backend, tmp_path: Path, fake_llm: FakeLLM) -> Settings:
    """Replies retried a moment apart, as in every Twilio test."""
    return twilio_settings(backend, tmp_path, fake_llm)


def _env(backend: Backend, tmp_path: Path) -> dict[str, str]:
    # The data dir of the test's server: the CLI encrypts with the key the server reads.
    env = server_env(backend, tmp_path, f"{REDIS_PREFIX_ROOT}cli-channels:")
    env.pop("TWILIO_AUTH_TOKEN", None)
    return env


async def test_channels_create_twilio_list_and_delete(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, clean_backend: Backend, tmp_path: Path
) -> None:
    admin = await make_user(client)
    env = _env(clean_backend, tmp_path)
    # The token is not on the command line (where `ps` shows it): read from stdin.
    created = await relaychat(
        env,
        "channels", "create", "twilio",
        "--name", "Front desk",
        "--account-sid", ACCOUNT_SID,
        "--public-url", "https://testserver",
        "--owner", admin.email,
        "--endpoint", "fake",
        "--api-base-url", fake_twilio.url,
        stdin=f"{AUTH_TOKEN}\n",
    )  # fmt: skip
    assert created.exit_code == 0, created.stderr
    match = re.search(r"webhook url: (\S+)", created.stdout)
    assert match is not None, created.stdout
    webhook_url = match.group(1)
    channel_id = webhook_url.rsplit("/", 1)[1]
    assert f"({channel_id})" in created.stdout

    response = await post_signed(client, webhook_url, fixture_form("inbound__sms"))
    assert response.status_code == 200, response.text
    (sent,) = await sent_messages(fake_twilio)
    assert (sent.to, sent.from_) == (SENDER, OUR_NUMBER)

    listed = await relaychat(env, "channels", "list")
    assert listed.exit_code == 0, listed.stderr
    assert channel_id in listed.stdout and "Front desk" in listed.stdout
    assert AUTH_TOKEN not in listed.stdout + created.stdout + created.stderr

    deleted = await relaychat(env, "channels", "delete", channel_id)
    assert deleted.exit_code == 0, deleted.stderr
    assert (await post_signed(client, webhook_url, fixture_form("inbound__sms"))).status_code == 404
    again = await relaychat(env, "channels", "delete", channel_id)
    assert again.exit_code == 1 and "channel" in again.stderr


async def test_channels_create_refuses_bad_settings(
    client: httpx.AsyncClient, clean_backend: Backend, tmp_path: Path
) -> None:
    await make_user(client)
    env = _env(clean_backend, tmp_path)
    bad = await relaychat(
        env,
        "channels", "create", "twilio",
        "--name", "x", "--account-sid", "AC123", "--auth-token", AUTH_TOKEN,
        "--public-url", "https://example.com", "--resolve-by-phone",
    )  # fmt: skip
    assert bad.exit_code == 2
    assert "account_sid" in bad.stderr
    by_phone = await relaychat(
        env,
        "channels", "create", "twilio",
        "--name", "by phone", "--account-sid", ACCOUNT_SID, "--auth-token-env", "TWILIO_TOKEN",
        "--public-url", "https://example.com", "--resolve-by-phone", "--provision-unknown",
    )  # fmt: skip
    assert by_phone.exit_code == 0, by_phone.stderr
    listed = await relaychat(env, "channels", "list")
    assert "by phone" in listed.stdout and "$TWILIO_TOKEN" in listed.stdout
    # Neither --auth-token nor --auth-token-env, and nothing on stdin: refused.
    nothing = await relaychat(
        env,
        "channels", "create", "twilio",
        "--name", "x", "--account-sid", ACCOUNT_SID, "--public-url", "https://example.com",
    )  # fmt: skip
    assert nothing.exit_code == 2
    assert "auth token" in nothing.stderr


async def test_channels_create_takes_the_token_from_twilio_auth_token(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, clean_backend: Backend, tmp_path: Path
) -> None:
    admin = await make_user(client)
    env = {**_env(clean_backend, tmp_path), "TWILIO_AUTH_TOKEN": AUTH_TOKEN}
    created = await relaychat(
        env,
        "channels", "create", "twilio",
        "--name", "From env", "--account-sid", ACCOUNT_SID, "--owner", admin.email,
        "--public-url", "https://testserver", "--api-base-url", fake_twilio.url,
    )  # fmt: skip
    assert created.exit_code == 0, created.stderr
    match = re.search(r"webhook url: (\S+)", created.stdout)
    assert match is not None, created.stdout
    response = await post_signed(client, match.group(1), fixture_form("inbound__sms"))
    assert response.status_code == 200, response.text
    # Naming a variable wins over the shell's TWILIO_AUTH_TOKEN.
    by_variable = await relaychat(
        env,
        "channels", "create", "twilio",
        "--name", "By variable", "--account-sid", ACCOUNT_SID, "--owner", admin.email,
        "--public-url", "https://testserver", "--auth-token-env", "TWILIO_OTHER_TOKEN",
    )  # fmt: skip
    assert by_variable.exit_code == 0, by_variable.stderr
    listed = await relaychat(env, "channels", "list")
    assert "$TWILIO_OTHER_TOKEN" in listed.stdout


def test_token_is_prompted_for_hidden_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, bool]] = []

    def prompt(text: str, *, hide_input: bool = False) -> str:
        asked.append((text, hide_input))
        return f" {AUTH_TOKEN} "

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(typer, "prompt", prompt)
    assert cli_channels.read_auth_token() == AUTH_TOKEN
    assert asked == [("Twilio auth token", True)]


async def test_dev_twilio_sign_prints_twilios_signature(tmp_path: Path) -> None:
    url = "https://relay.example.com/api/channels/twilio/abc?x=1"
    env = {"PATH": "/usr/bin:/bin", "RELAYCHAT_DATA_DIR": str(tmp_path)}
    result = await relaychat(
        env, "dev", "twilio-sign", "--url", url, "--auth-token", AUTH_TOKEN,
        "From=+14155552671", "Body=Hello there", "To=+14155550100",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    expected = sign(
        url, [("From", "+14155552671"), ("Body", "Hello there"), ("To", "+14155550100")]
    )
    assert result.stdout.strip() == expected
