"""`relaychat dev fake-llm`: the command's options, and the server it would run."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from relaychat.cli import dev as cli
from relaychat.devtools.fake_config import FakeConfig


def test_fake_llm_command_passes_its_options(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[tuple[str, int, FakeConfig]] = []
    monkeypatch.setattr(
        "relaychat.devtools.fake_llm.serve_fake_llm",
        lambda host, port, config: served.append((host, port, config)),
    )

    result = CliRunner().invoke(
        cli.dev_app,
        ["fake-llm", "--port", "9123", "--ttft-ms", "40", "--token-delay-ms", "5", "--reply", "hi"],
    )

    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:9123/v1" in result.output
    ((host, port, config),) = served
    assert (host, port) == ("127.0.0.1", 9123)
    assert (config.ttft_ms, config.token_delay_ms, config.reply) == (40, 5, "hi")


def test_fake_llm_command_refuses_negative_delays() -> None:
    result = CliRunner().invoke(cli.dev_app, ["fake-llm", "--ttft-ms", "-1"])

    assert result.exit_code != 0
