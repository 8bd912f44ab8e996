"""What a stdio MCP server inherits of relaychat's environment, checked from inside a real
server process."""

from __future__ import annotations

import json
import sys

import pytest

from relaychat.llm.mcp import McpManager, StdioServerConfig
from relaychat.llm.mcp.environment import child_environment
from tests.support.mcp import CONTEXT, ROOT, managing

# Certificate and proxy settings a server needs to reach anything from behind a proxy or
# with a private CA (uvx downloading its package, an API client): passed by default.
NETWORK = {
    "SSL_CERT_FILE": "/etc/corp/ca.pem",
    "SSL_CERT_DIR": "/etc/corp/certs",
    "REQUESTS_CA_BUNDLE": "/etc/corp/bundle.pem",
    "HTTPS_PROXY": "http://proxy.corp:3128",
    "https_proxy": "http://proxy.corp:3128",
    "HTTP_PROXY": "http://proxy.corp:3128",
    "NO_PROXY": "localhost,127.0.0.1",
    "no_proxy": "localhost,127.0.0.1",
}


def env_server(**overrides: object) -> StdioServerConfig:
    values: dict[str, object] = {
        "command": sys.executable,
        "args": [str(ROOT / "tests" / "llm" / "mcp" / "env_server.py")],
    }
    values.update(overrides)
    return StdioServerConfig.model_validate(values)


async def child_env(config: StdioServerConfig) -> dict[str, str]:
    async with managing(McpManager({"env": config})) as manager:
        [tool] = await manager.tools("env")
        result: dict[str, str] = json.loads(await tool.run({}, CONTEXT))
        return result


async def test_certificate_and_proxy_settings_reach_the_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in NETWORK.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RELAYCHAT_JWT_SECRET", "not-for-children")

    seen = await child_env(env_server())

    assert {name: seen.get(name) for name in NETWORK} == NETWORK
    assert "PATH" in seen
    # relaychat's own settings stay out.
    assert "RELAYCHAT_JWT_SECRET" not in seen


async def test_inherit_env_passes_named_variables_and_prefixes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UV_INDEX_URL", "https://pypi.corp/simple")
    monkeypatch.setenv("UV_NATIVE_TLS", "1")
    monkeypatch.setenv("NPM_CONFIG_REGISTRY", "https://npm.corp")
    monkeypatch.setenv("OTHER_SETTING", "kept-back")

    seen = await child_env(
        env_server(inherit_env=["UV_*", "NPM_CONFIG_REGISTRY"], env={"EXTRA": "given"})
    )

    assert seen["UV_INDEX_URL"] == "https://pypi.corp/simple"
    assert seen["UV_NATIVE_TLS"] == "1"
    assert seen["NPM_CONFIG_REGISTRY"] == "https://npm.corp"
    assert seen["EXTRA"] == "given"
    assert "OTHER_SETTING" not in seen


def test_env_wins_over_inherited_values_and_shell_functions_never_pass() -> None:
    environ = {
        "PATH": "/usr/bin",
        "HTTPS_PROXY": "http://proxy:1",
        "BASH_FUNC_x%%": "() { echo hi; }",
        "UV_X": "() { evil; }",
        "SECRET": "s",
    }

    env = child_environment(environ, ["UV_*", "BASH_FUNC_*"], {"HTTPS_PROXY": ""})

    assert env == {"PATH": "/usr/bin", "HTTPS_PROXY": ""}


@pytest.mark.parametrize("name", ["", "A B", "1ABC", "*", "A*B", "A-B"])
def test_inherit_env_names_are_variable_names_or_prefixes(name: str) -> None:
    with pytest.raises(ValueError, match="inherit_env"):
        env_server(inherit_env=[name])
