"""relaychat.yaml: the LLM endpoints, shaped like LibreChat's librechat.yaml.

    endpoints:
      openAI:      {api_key, base_url, models: {default: [...], fetch: bool}, title_model}
      anthropic:   {...same...}
      google:      {...same...}
      azureOpenAI: {...same..., base_url: https://<resource>.openai.azure.com, api_version}
      custom:
        - {name, base_url, api_key, models, title_model}     # OpenAI-compatible servers
    mcp_servers: ...                                          # kept raw for the MCP layer

Every endpoint also takes `headers`, `timeouts: {connect, first_token, idle}` (seconds),
`max_retries` and `max_tokens` (the default where a provider needs one). LibreChat's
spellings `apiKey`, `baseURL` and `titleModel` are accepted too.

`${VAR}` and `${VAR:-default}` in values are read from the env mapping given (os.environ
at call time by default); `$$` is a literal `$`. An endpoint using a variable that is not
set (and has no default) is left out, and listed in `LLMConfig.skipped` for a warning. A
built-in endpoint without `api_key` uses its usual variable (OPENAI_API_KEY,
ANTHROPIC_API_KEY, GOOGLE_API_KEY, AZURE_OPENAI_API_KEY). Without a file, or a file
without `endpoints`, the built-in endpoints whose key is in the environment are enabled.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

logger = logging.getLogger(__name__)

ProviderKind = Literal["openai", "anthropic", "google", "azure_openai", "custom"]

# name in the file -> (provider, environment variable of its key, official base URL)
BUILTIN_ENDPOINTS: dict[str, tuple[ProviderKind, str, str | None]] = {
    "openAI": ("openai", "OPENAI_API_KEY", "https://api.openai.com/v1"),
    "anthropic": ("anthropic", "ANTHROPIC_API_KEY", "https://api.anthropic.com"),
    "google": ("google", "GOOGLE_API_KEY", "https://generativelanguage.googleapis.com"),
    "azureOpenAI": ("azure_openai", "AZURE_OPENAI_API_KEY", None),
}
# Offered until (or unless) the upstream's own list is fetched.
DEFAULT_MODELS: dict[str, list[str]] = {
    "openAI": ["gpt-4.1", "gpt-4.1-mini", "gpt-4o", "gpt-4o-mini"],
    "anthropic": ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"],
    "google": ["gemini-2.5-flash", "gemini-2.5-pro"],
}
# Built-in endpoints enabled from the environment alone, and the variable of their base URL.
ENV_ONLY_ENDPOINTS = {"openAI": "OPENAI_BASE_URL", "anthropic": "ANTHROPIC_BASE_URL", "google": ""}
DEFAULT_AZURE_API_VERSION = "2024-10-21"


class ConfigError(ValueError):
    """relaychat.yaml cannot be used; the message names the file and the bad key."""


class MissingVariable(ConfigError):
    """A `${VAR}` without a default names a variable the environment does not have."""

    def __init__(self, path: str, variable: str) -> None:
        super().__init__(f"{path or 'value'}: environment variable {variable} is not set")
        self.variable = variable


@dataclass(frozen=True)
class SkippedEndpoint:
    """An endpoint (or MCP server, `kind`) left out because a variable it uses is not set."""

    name: str
    variable: str
    source: str
    kind: str = "endpoint"

    def __str__(self) -> str:
        return (
            f"{self.source}: {self.kind} {self.name} skipped: "
            f"environment variable {self.variable} is not set"
        )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ModelsConfig(_Strict):
    default: list[str] = Field(default_factory=list)
    fetch: bool = False


class TimeoutsConfig(_Strict):
    connect: float = Field(10.0, gt=0)
    first_token: float = Field(120.0, gt=0)
    idle: float = Field(60.0, gt=0)


class EndpointConfig(_Strict):
    api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("api_key", "apiKey"))
    base_url: str | None = Field(None, validation_alias=AliasChoices("base_url", "baseURL"))
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    title_model: str | None = Field(
        None, validation_alias=AliasChoices("title_model", "titleModel")
    )
    headers: dict[str, str] = Field(default_factory=dict)
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    max_retries: int = Field(2, ge=0, le=10)
    max_tokens: int | None = Field(None, gt=0)


class AzureEndpointConfig(EndpointConfig):
    base_url: str = Field(validation_alias=AliasChoices("base_url", "baseURL"))
    api_version: str = Field(
        DEFAULT_AZURE_API_VERSION, validation_alias=AliasChoices("api_version", "apiVersion")
    )


class CustomEndpointConfig(EndpointConfig):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
    base_url: str = Field(validation_alias=AliasChoices("base_url", "baseURL"))


class EndpointsConfig(_Strict):
    openai: EndpointConfig | None = Field(None, alias="openAI")
    anthropic: EndpointConfig | None = None
    google: EndpointConfig | None = None
    azure_openai: AzureEndpointConfig | None = Field(None, alias="azureOpenAI")
    custom: list[CustomEndpointConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> EndpointsConfig:
        seen = {name.lower() for name in BUILTIN_ENDPOINTS}
        for endpoint in self.custom:
            if endpoint.name.lower() in seen:
                raise ValueError(f"custom endpoint name {endpoint.name!r} is already taken")
            seen.add(endpoint.name.lower())
        return self


class LLMConfig(BaseModel):
    """The parsed file; unknown top-level sections are ignored (with a warning)."""

    model_config = ConfigDict(extra="ignore")

    version: str | int | None = None
    endpoints: EndpointsConfig = Field(default_factory=EndpointsConfig)
    # Parsed by the MCP layer; raw here so that its mistakes don't stop the endpoints.
    mcp_servers: Any = None
    # Endpoints whose variables are missing: the server starts without them and says so.
    skipped: list[SkippedEndpoint] = Field(default_factory=list, exclude=True)

    def endpoint_specs(self) -> list[EndpointSpec]:
        """Every configured endpoint, built-ins first, then custom ones in file order."""
        e = self.endpoints
        builtins: list[tuple[str, EndpointConfig | None]] = [
            ("openAI", e.openai),
            ("anthropic", e.anthropic),
            ("google", e.google),
            ("azureOpenAI", e.azure_openai),
        ]
        specs = [_spec(name, cfg) for name, cfg in builtins if cfg is not None]
        return specs + [_spec(c.name, c) for c in e.custom]


@dataclass(frozen=True)
class EndpointSpec:
    """One endpoint, resolved: what the registry builds an adapter from."""

    name: str
    provider: ProviderKind
    config: EndpointConfig

    @property
    def api_key(self) -> str | None:
        """The key in clear, for the adapter only."""
        return self.config.api_key.get_secret_value() if self.config.api_key else None

    @property
    def base_url(self) -> str | None:
        """The configured base URL, else the provider's official one."""
        builtin = BUILTIN_ENDPOINTS.get(self.name)
        official = builtin[2] if builtin and self.provider != "custom" else None
        return self.config.base_url or official


def _spec(name: str, config: EndpointConfig) -> EndpointSpec:
    provider: ProviderKind = "custom"
    if isinstance(config, AzureEndpointConfig):
        provider = "azure_openai"
    elif not isinstance(config, CustomEndpointConfig):
        provider = BUILTIN_ENDPOINTS[name][0]
    return EndpointSpec(name=name, provider=provider, config=config)


# -- environment interpolation ---------------------------------------------------------------

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(value: Any, env: Mapping[str, str], path: str = "") -> Any:
    """`value` with `${VAR}` / `${VAR:-default}` replaced in every string inside it."""
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise MissingVariable(path, name)

        return _VARIABLE.sub(replace, value)
    if isinstance(value, dict):
        return {k: interpolate(v, env, _join(path, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# -- loading ---------------------------------------------------------------------------------


def load_config(path: Path | str | None, env: Mapping[str, str] | None = None) -> LLMConfig:
    """The endpoints from `path`, or from the environment when there is no such file."""
    env = os.environ if env is None else env
    raw: Any = None
    source = str(path) if path is not None else "environment"
    if path is not None and Path(path).is_file():
        raw = read_yaml(path)
    return parse_config(raw, env, source=source)


def read_yaml(path: Path | str) -> Any:
    """The YAML document in the file at `path`; raises ConfigError naming the file."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from exc


def parse_config(raw: Any, env: Mapping[str, str], *, source: str = "config") -> LLMConfig:
    """Validate an already-loaded document (None means no file)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    ignored = sorted(set(raw) - set(LLMConfig.model_fields))
    if ignored:
        logger.warning("%s: ignoring unknown sections %s", source, ", ".join(ignored))
    document = dict(raw)
    if document.get("endpoints") is None:
        document["endpoints"] = _endpoints_from_env(env)
    else:
        document["endpoints"] = _with_default_keys(document["endpoints"])
    try:
        document["endpoints"], skipped = _available_endpoints(document["endpoints"], env, source)
        document["version"] = interpolate(document.get("version"), env, "version")
        config = LLMConfig.model_validate(document)
        config.skipped = skipped
        return config
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid configuration\n{_describe(exc)}") from None


def _available_endpoints(
    endpoints: Any, env: Mapping[str, str], source: str
) -> tuple[Any, list[SkippedEndpoint]]:
    """The endpoints interpolated; one whose variable is missing is left out, not fatal, so
    an example file with every provider in it starts with the keys one has."""
    if not isinstance(endpoints, dict):
        return interpolate(endpoints, env, "endpoints"), []
    skipped: list[SkippedEndpoint] = []

    def one(section: Any, path: str, name: str) -> tuple[bool, Any]:
        try:
            return True, interpolate(section, env, path)
        except MissingVariable as exc:
            skipped.append(SkippedEndpoint(name, exc.variable, source))
            return False, None

    kept: dict[str, Any] = {}
    for name, section in endpoints.items():
        if name == "custom" and isinstance(section, list):
            customs = []
            for i, entry in enumerate(section):
                label = entry.get("name") if isinstance(entry, dict) else None
                ok, value = one(entry, f"endpoints.custom[{i}]", str(label or f"custom[{i}]"))
                if ok:
                    customs.append(value)
            kept[name] = customs
        else:
            ok, value = one(section, _join("endpoints", str(name)), str(name))
            if ok:
                kept[name] = value
    return kept, skipped


def _with_default_keys(endpoints: Any) -> Any:
    """Built-in endpoints without a key get `${THEIR_USUAL_VARIABLE}`."""
    if not isinstance(endpoints, dict):
        return endpoints
    filled = dict(endpoints)
    for name, (_, variable, _) in BUILTIN_ENDPOINTS.items():
        section = filled.get(name)
        if isinstance(section, dict) and "api_key" not in section and "apiKey" not in section:
            filled[name] = {**section, "api_key": f"${{{variable}}}"}
        elif name in filled and section is None:
            filled[name] = {"api_key": f"${{{variable}}}"}
    return filled


def _endpoints_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    endpoints: dict[str, Any] = {}
    for name, base_url_variable in ENV_ONLY_ENDPOINTS.items():
        variable = BUILTIN_ENDPOINTS[name][1]
        key = env.get(variable) or (env.get("GEMINI_API_KEY") if name == "google" else None)
        if not key:
            continue
        # Escaped, since interpolation runs over these values too.
        section: dict[str, Any] = {
            "api_key": key.replace("$", "$$"),
            "models": {"default": DEFAULT_MODELS[name], "fetch": True},
        }
        if base_url_variable and env.get(base_url_variable):
            section["base_url"] = env[base_url_variable].replace("$", "$$")
        endpoints[name] = section
    return endpoints


def _describe(exc: ValidationError) -> str:
    """One line per problem, each naming the dotted key, e.g. `endpoints.custom[0].base_url`."""
    lines = []
    for error in exc.errors(include_url=False):
        path = ""
        for part in error["loc"]:
            path = f"{path}[{part}]" if isinstance(part, int) else _join(path, str(part))
        if error["type"] == "extra_forbidden":
            lines.append(f"  {path}: unknown key")
        else:
            lines.append(f"  {path}: {error['msg']}")
    return "\n".join(lines)
