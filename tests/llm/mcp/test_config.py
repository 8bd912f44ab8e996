"""The `mcp_servers` section of relaychat.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaychat.llm.config import ConfigError, load_config
from relaychat.llm.mcp import HttpServerConfig, StdioServerConfig, load_mcp_config
from relaychat.llm.mcp.config import parse_mcp_config

CONFIG = """\
endpoints:
  custom:
    - {name: local, base_url: "http://127.0.0.1:9/v1", api_key: x}
mcp_servers:
  time:
    command: python
    args: ["-m", "mcp_server_time", "--local-timezone", "${TZ_NAME:-UTC}"]
    env: {API_TOKEN: "${TOKEN}"}
    inherit_env: [UV_INDEX_URL, "NPM_*"]
    cwd: /srv
    timeout_seconds: 5
  search-1:
    type: streamable-http
    url: "http://127.0.0.1:8080/mcp"
    headers: {Authorization: "Bearer ${TOKEN}", X-Literal: "$$5"}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "relaychat.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_stdio_and_http_servers_with_env_interpolation(tmp_path: Path) -> None:
    servers = load_mcp_config(write(tmp_path, CONFIG), env={"TOKEN": "s3cret"})

    assert list(servers) == ["time", "search-1"]
    time = servers["time"]
    assert isinstance(time, StdioServerConfig)
    assert time.command == "python"
    assert time.args == ["-m", "mcp_server_time", "--local-timezone", "UTC"]
    assert time.env == {"API_TOKEN": "s3cret"}
    assert time.inherit_env == ["UV_INDEX_URL", "NPM_*"]
    assert time.cwd == "/srv"
    assert time.timeout_seconds == 5
    search = servers["search-1"]
    assert isinstance(search, HttpServerConfig)
    assert search.url == "http://127.0.0.1:8080/mcp"
    assert search.headers == {"Authorization": "Bearer s3cret", "X-Literal": "$5"}
    assert search.timeout_seconds == 30
    # Secrets stay out of reprs (and so out of logs).
    assert "s3cret" not in repr(servers)


def test_the_endpoints_loader_still_accepts_the_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CONFIG), env={})

    assert [spec.name for spec in config.endpoint_specs()] == ["local"]


@pytest.mark.parametrize(
    "text",
    ["", "endpoints: {}\n", "mcp_servers:\n", "mcp_servers: {}\n", "- a list\n"],
    ids=["empty", "no-section", "null-section", "empty-section", "not-a-mapping"],
)
def test_no_section_means_no_servers(tmp_path: Path, text: str) -> None:
    assert load_mcp_config(write(tmp_path, text), env={}) == {}


def test_no_file_means_no_servers(tmp_path: Path) -> None:
    assert load_mcp_config(tmp_path / "missing.yaml", env={}) == {}
    assert load_mcp_config(None, env={}) == {}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"bad name": {"command": "x"}}, "mcp_servers.bad name: server names use"),
        ({"x" * 31: {"command": "x"}}, "server names use letters"),
        ({"s": {"command": "x", "url": "http://h"}}, "mcp_servers.s: give either `command`"),
        ({"s": {"args": []}}, "mcp_servers.s: give either `command`"),
        ({"s": "npx server"}, "mcp_servers.s: must be a mapping"),
        ({"s": {"command": "x", "argz": []}}, "mcp_servers.s.argz: unknown key"),
        ({"s": {"command": "x", "args": "-v"}}, "mcp_servers.s.args: Input should be a valid list"),
        ({"s": {"command": "x", "args": [1]}}, "mcp_servers.s.args[0]: Input should be a valid"),
        ({"s": {"url": "ftp://h"}}, "mcp_servers.s.url: Value error, must be an http"),
        ({"s": {"url": "http://h", "timeout_seconds": 0}}, "mcp_servers.s.timeout_seconds"),
        ({"s": {"url": "http://h", "type": "stdio"}}, "mcp_servers.s.type"),
        ({"s": {"command": "x", "inherit_env": ["A B"]}}, "mcp_servers.s.inherit_env[0]"),
        ({"s": {"url": "http://h", "inherit_env": ["A"]}}, "mcp_servers.s.inherit_env: unknown"),
        # `a__b__c` would be tool `b__c` of `a` or tool `c` of `a__b`; `a___c` likewise.
        ({"a": {"command": "x"}, "a__b": {"command": "x"}}, "mcp_servers.a__b: its tool names"),
        ({"a_": {"command": "x"}, "a": {"command": "x"}}, "mcp_servers.a_: its tool names"),
    ],
)
def test_mistakes_name_the_key(section: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_mcp_config(section, {}, source="relaychat.yaml")

    assert str(caught.value).startswith("relaychat.yaml: ")
    assert message in str(caught.value)


def test_a_section_that_is_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mcp_servers must be a mapping"):
        load_mcp_config(write(tmp_path, "mcp_servers: [a, b]\n"), env={})


def test_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_mcp_config(write(tmp_path, "mcp_servers: {a: [}\n"), env={})


def test_a_server_whose_variable_is_missing_is_skipped(tmp_path: Path) -> None:
    servers = load_mcp_config(write(tmp_path, CONFIG), env={})

    assert list(servers) == []
    assert [str(s) for s in servers.skipped] == [
        f"{tmp_path / 'relaychat.yaml'}: MCP server {name} skipped: "
        "environment variable TOKEN is not set"
        for name in ("time", "search-1")
    ]
    # `${VAR:-default}` is not missing; a server without variables stays.
    kept = load_mcp_config(
        write(tmp_path, "mcp_servers:\n  a:\n    url: ${URL:-http://127.0.0.1:1/mcp}\n"), env={}
    )
    assert list(kept) == ["a"] and kept.skipped == []


def test_a_skipped_server_still_reserves_its_tool_names_and_is_disabled(tmp_path: Path) -> None:
    text = "mcp_servers:\n  a: {url: '${URL}'}\n  a__b: {command: x}\n"
    with pytest.raises(ConfigError, match="its tool names would begin like those of"):
        load_mcp_config(write(tmp_path, text), env={})

    servers = load_mcp_config(write(tmp_path, CONFIG), env={})
    assert servers.disabled() == {
        "time": "environment variable TOKEN is not set",
        "search-1": "environment variable TOKEN is not set",
    }


def test_servers_with_similar_names_are_fine(tmp_path: Path) -> None:
    text = "mcp_servers:\n  a: {command: x}\n  a_b: {command: x}\n  ab: {command: x}\n"
    assert list(load_mcp_config(write(tmp_path, text), env={})) == ["a", "a_b", "ab"]
