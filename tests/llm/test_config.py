"""relaychat.yaml: env interpolation, validation messages, and the environment-only fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaychat.llm.config import ConfigError, LLMConfig, load_config

REPO_ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "relaychat.yaml"
    path.write_text(text)
    return path


def names(config: LLMConfig) -> list[str]:
    return [spec.name for spec in config.endpoint_specs()]


def test_env_variables_are_interpolated(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
endpoints:
  custom:
    - name: local
      base_url: http://${HOST:-127.0.0.1}:${PORT}/v1
      api_key: ${LOCAL_KEY}
      headers: {X-Price: "$$5"}
      models: {default: [m1, m2]}
""",
    )
    config = load_config(path, {"PORT": "9100", "LOCAL_KEY": "sekrit"})

    (spec,) = config.endpoint_specs()
    assert spec.base_url == "http://127.0.0.1:9100/v1"
    assert spec.api_key == "sekrit"
    assert spec.config.headers == {"X-Price": "$5"}
    assert spec.provider == "custom"
    assert "sekrit" not in repr(config), "keys stay out of logs and reprs"


def test_an_endpoint_whose_variable_is_missing_is_skipped_naming_it(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
endpoints:
  openAI: {api_key: "${NO_SUCH_KEY}"}
  custom:
    - {name: a, base_url: "http://a", api_key: "${A_KEY}"}
    - {name: b, base_url: "http://b", api_key: "${B_KEY:-fallback}"}
""",
    )
    config = load_config(path, {})

    assert names(config) == ["b"]
    assert [(s.name, s.variable) for s in config.skipped] == [
        ("openAI", "NO_SUCH_KEY"),
        ("a", "A_KEY"),
    ]
    message = str(config.skipped[1])
    assert str(path) in message and "endpoint a skipped" in message and "A_KEY" in message


def test_a_missing_variable_outside_an_endpoint_stops_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, 'version: "${NO_VERSION}"\n')
    with pytest.raises(ConfigError, match=r"version.*NO_VERSION"):
        load_config(path, {})


def test_built_in_endpoint_without_key_uses_its_usual_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "endpoints:\n  openAI:\n    models: {default: [gpt-x]}\n")

    (spec,) = load_config(path, {"OPENAI_API_KEY": "sk-env"}).endpoint_specs()
    assert spec.api_key == "sk-env"
    assert spec.base_url == "https://api.openai.com/v1"
    without = load_config(path, {})
    assert names(without) == [] and without.skipped[0].variable == "OPENAI_API_KEY"


def test_base_url_overrides_a_built_in(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
endpoints:
  openAI: {api_key: k, base_url: "http://proxy.local/v1"}
  anthropic: {apiKey: k, baseURL: "http://claude-proxy.local", titleModel: claude-x}
""",
    )
    openai, anthropic = load_config(path, {}).endpoint_specs()

    assert openai.base_url == "http://proxy.local/v1"
    assert anthropic.base_url == "http://claude-proxy.local"
    assert anthropic.config.title_model == "claude-x"


def test_no_file_means_endpoints_from_the_environment(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"

    assert names(load_config(missing, {})) == []
    config = load_config(
        missing,
        {"OPENAI_API_KEY": "sk-1", "ANTHROPIC_API_KEY": "a$b", "GOOGLE_API_KEY": "g"},
    )
    assert names(config) == ["openAI", "anthropic", "google"]
    openai, anthropic, google = config.endpoint_specs()
    assert openai.config.models.fetch is True
    assert openai.config.models.default
    assert anthropic.api_key == "a$b", "a key is used verbatim, never interpolated"
    assert google.provider == "google"


def test_env_base_url_in_the_fallback(tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": "sk", "OPENAI_BASE_URL": "http://127.0.0.1:9100/v1"}

    (spec,) = load_config(None, env).endpoint_specs()

    assert spec.base_url == "http://127.0.0.1:9100/v1"


def test_a_file_without_endpoints_falls_back_to_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "mcp_servers:\n  files: {command: npx}\n")

    config = load_config(path, {"ANTHROPIC_API_KEY": "k"})

    assert names(config) == ["anthropic"]
    assert config.mcp_servers == {"files": {"command": "npx"}}


def test_custom_endpoints_keep_their_order_and_options(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
endpoints:
  custom:
    - name: Ollama
      base_url: http://localhost:11434/v1
      models: {default: [llama3.2], fetch: true}
      title_model: llama3.2
      timeouts: {first_token: 300}
      max_retries: 0
    - name: vLLM
      base_url: http://gpu:8000/v1
      api_key: k
""",
    )
    ollama, vllm = load_config(path, {}).endpoint_specs()

    assert (ollama.name, vllm.name) == ("Ollama", "vLLM")
    assert ollama.api_key is None
    assert ollama.config.models.fetch is True
    assert ollama.config.timeouts.first_token == 300
    assert ollama.config.timeouts.idle == 60
    assert ollama.config.max_retries == 0
    assert vllm.config.models.default == []


def test_mcp_servers_are_kept_raw_and_never_fail_the_load(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
endpoints: {}
mcp_servers:
  - whatever: [1, 2]
    token: ${NOT_SET_ANYWHERE}
interface: {privacy: true}
""",
    )
    config = load_config(path, {})

    assert config.mcp_servers == [{"whatever": [1, 2], "token": "${NOT_SET_ANYWHERE}"}]
    assert names(config) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("endpoints:\n  custom:\n    - {name: a, api_key: k}\n", "endpoints.custom[0].base_url"),
        ("endpoints:\n  openAI: {api_key: k, base_uri: x}\n", "endpoints.openAI.base_uri: unknown"),
        ("endpoints:\n  mistral: {api_key: k}\n", "endpoints.mistral: unknown key"),
        (
            "endpoints:\n  anthropic: {api_key: k, models: {default: gpt}}\n",
            "endpoints.anthropic.models.default",
        ),
        (
            "endpoints:\n  custom:\n    - {name: x, base_url: u}\n    - {name: X, base_url: u}\n",
            "already taken",
        ),
        ("endpoints:\n  custom:\n    - {name: openai, base_url: u}\n", "already taken"),
        ("endpoints:\n  azureOpenAI: {api_key: k}\n", "endpoints.azureOpenAI.base_url"),
        ("- just a list\n", "top level must be a mapping"),
        ("endpoints: [unclosed\n", "not valid YAML"),
    ],
)
def test_errors_name_the_bad_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), {})
    assert expected in str(caught.value)


def test_the_example_file_loads(tmp_path: Path) -> None:
    example = REPO_ROOT / "relaychat.example.yaml"
    env = {"OPENAI_API_KEY": "sk", "ANTHROPIC_API_KEY": "ak"}

    config = load_config(example, env)

    specs = {spec.name: spec for spec in config.endpoint_specs()}
    assert set(specs) == {"openAI", "anthropic", "fake"}
    assert specs["fake"].base_url == "http://127.0.0.1:9100/v1"
    assert specs["fake"].api_key == "fake-key"
    assert specs["anthropic"].config.max_tokens == 8192
