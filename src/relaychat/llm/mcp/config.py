"""The `mcp_servers:` section of relaychat.yaml: which MCP servers agents may use.

    mcp_servers:
      github:                                   # stdio: a subprocess speaking MCP on stdin/stdout
        command: npx
        args: ["-y", "@modelcontextprotocol/server-github"]
        env: {GITHUB_TOKEN: "${GITHUB_TOKEN}"}
        inherit_env: [NPM_CONFIG_REGISTRY, "UV_*"]   # optional: more of relaychat's variables
        cwd: /srv/mcp                           # optional
        timeout_seconds: 30                     # optional: start-up and each call
      search:                                   # streamable HTTP
        url: https://mcp.example.com/mcp
        headers: {Authorization: "Bearer ${SEARCH_TOKEN}"}

A stdio server's `env` is added to a minimal inherited environment (PATH, HOME, locale,
certificate and proxy settings: see environment.py) and the variables named in
`inherit_env` (`NAME`, or `PREFIX*`), not to relaychat's own, so relaychat's secrets don't
reach it unless passed on purpose.
A server is stdio when it has `command`, streamable HTTP when it has `url`; LibreChat's
`type: stdio | streamable-http` is accepted too. `${VAR}` and `${VAR:-default}` are read
from the environment as in the endpoints section, and likewise a server whose variable is
not set is skipped with one warning naming it. Names become tool-name prefixes
(`github__create_issue`), hence the tool-name alphabet; and since an agent names single
tools that way, no server's name followed by `__` may begin another's (`a` and `a__b`, or
`a` and `a_`), so every tool name points to one server.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from relaychat.llm.config import (
    ConfigError,
    MissingVariable,
    SkippedEndpoint,
    interpolate,
    read_yaml,
)
from relaychat.llm.mcp.tools import SEPARATOR

SERVER_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,30}$"
# An environment variable name, or a prefix of names ending in `*`.
INHERIT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*\*?$"
DEFAULT_TIMEOUT_SECONDS = 30.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StdioServerConfig(_Strict):
    """A server run as a subprocess, one per relaychat process."""

    type: Literal["stdio"] = "stdio"
    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    # Often holds tokens, so kept out of reprs and logs.
    env: dict[str, str] = Field(default_factory=dict, repr=False)
    inherit_env: list[Annotated[str, StringConstraints(pattern=INHERIT_PATTERN)]] = Field(
        default_factory=list
    )
    cwd: str | None = None
    timeout_seconds: float = Field(DEFAULT_TIMEOUT_SECONDS, gt=0, le=3600)


class HttpServerConfig(_Strict):
    """A server reached over streamable HTTP."""

    type: Literal["streamable-http", "streamable_http", "http"] = "streamable-http"
    url: str
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    timeout_seconds: float = Field(DEFAULT_TIMEOUT_SECONDS, gt=0, le=3600)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


McpServerConfig = StdioServerConfig | HttpServerConfig


class McpServers(dict[str, McpServerConfig]):
    """The usable servers by name, and those `skipped` for a missing variable (to warn of)."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped: list[SkippedEndpoint] = []

    def disabled(self) -> dict[str, str]:
        """The skipped servers, and why: they stay nameable in agents, as disabled."""
        return {
            skipped.name: f"environment variable {skipped.variable} is not set"
            for skipped in self.skipped
        }


def mcp_servers_of(servers: McpServers) -> dict[str, None]:
    """Every server an agent may name, its tools unknown (nothing is started to learn them)."""
    return dict.fromkeys([*servers, *servers.disabled()])


def load_mcp_config(path: Path | str | None, env: Mapping[str, str] | None = None) -> McpServers:
    """The MCP servers configured in `path`; none without a file or a `mcp_servers` section."""
    if path is None or not Path(path).is_file():
        return McpServers()
    document = read_yaml(path)
    section = document.get("mcp_servers") if isinstance(document, dict) else None
    return parse_mcp_config(section, os.environ if env is None else env, source=str(path))


def parse_mcp_config(section: Any, env: Mapping[str, str], *, source: str = "config") -> McpServers:
    """Validate an already-loaded `mcp_servers` section (None means none). A server whose
    `${VAR}` is not set is skipped, not fatal, as endpoints are."""
    servers = McpServers()
    if section is None:
        return servers
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: mcp_servers must be a mapping of name to server")
    for name, raw in section.items():
        key = f"mcp_servers.{name}"
        if not isinstance(name, str) or not re.fullmatch(SERVER_NAME_PATTERN, name):
            raise ConfigError(
                f"{source}: {key}: server names use letters, digits, '_' and '-' (1-30 characters)"
            )
        try:
            servers[name] = _parse_server(interpolate(raw, env, key), key)
        except MissingVariable as exc:
            servers.skipped.append(SkippedEndpoint(name, exc.variable, source, "MCP server"))
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    _refuse_ambiguous_prefixes([str(name) for name in section], source)
    return servers


def _refuse_ambiguous_prefixes(names: list[str], source: str) -> None:
    """Refuse two servers whose tool names could be the same string: with `a` and `a__b`,
    `a__b__c` is tool `b__c` of one or `c` of the other (skipped servers count too: their
    names are still in agents)."""
    for first in names:
        for second in names:
            if first != second and f"{second}{SEPARATOR}".startswith(f"{first}{SEPARATOR}"):
                raise ConfigError(
                    f"{source}: mcp_servers.{second}: its tool names would begin like those of "
                    f"mcp_servers.{first} ({first}{SEPARATOR}…); rename one of them"
                )


def _parse_server(raw: Any, key: str) -> McpServerConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{key}: must be a mapping with `command` or `url`")
    if ("command" in raw) == ("url" in raw):
        raise ConfigError(f"{key}: give either `command` (stdio) or `url` (streamable HTTP)")
    model: type[McpServerConfig] = StdioServerConfig if "command" in raw else HttpServerConfig
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid MCP server\n{_describe(exc, key)}") from None


def _describe(exc: ValidationError, key: str) -> str:
    """One line per problem, each naming the dotted key, e.g. `mcp_servers.github.args[0]`."""
    lines = []
    for error in exc.errors(include_url=False):
        path = key
        for part in error["loc"]:
            path = f"{path}[{part}]" if isinstance(part, int) else f"{path}.{part}"
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        lines.append(f"  {path}: {message}")
    return "\n".join(lines)
