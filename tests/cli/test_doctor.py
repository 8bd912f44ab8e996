"""`relaychat doctor` and GET /api/admin/doctor: each check finds what it is there to find —
a wrong endpoint key, an unreachable endpoint, an MCP server that does not start, a webhook
target no longer allowed, a Twilio channel whose auth token Twilio refuses, loose file modes,
a placeholder secret — and says it without the secret, with a verdict and an exit code."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from relaychat.devtools.fake_llm import FakeLLM, running_fake_llm
from relaychat.devtools.fake_twilio import FakeTwilio
from tests.support.backends import REDIS_PREFIX_ROOT, Backend
from tests.support.cli import relaychat_async
from tests.support.factories import make_user
from tests.support.live import free_port, running_server, server_env
from tests.support.twilio import make_channel
from tests.support.webhooks import Receiver, register

WRONG_KEY = "sk-wrong-0123456789abcdef"
WRONG_TWILIO_TOKEN = "0123456789abcdef0123456789abcdef"


def config(path: Path, fake: FakeLLM, *, key: str, broken: bool) -> dict[str, str]:
    """A relaychat.yaml: the fake endpoint (with `key`), and when `broken` an endpoint
    nothing listens for and an MCP server whose command does not exist."""
    extra_endpoint = (
        f"""
    - name: nowhere
      base_url: http://127.0.0.1:{free_port()}/v1
      api_key: any
      models: {{default: [m]}}"""
        if broken
        else ""
    )
    extra_server = (
        """
  ghost:
    command: /nonexistent/mcp-ghost"""
        if broken
        else ""
    )
    path.write_text(
        f"""
endpoints:
  custom:
    - name: fake
      base_url: {fake.openai_base_url}
      api_key: {key}
      models: {{default: [fake-model]}}{extra_endpoint}
mcp_servers:
  time:
    command: {sys.executable}
    args: [-m, mcp_server_time, --local-timezone, UTC]{extra_server}
"""
    )
    return {"RELAYCHAT_CONFIG": str(path)}


def rows(stdout: str) -> dict[tuple[str, str], dict[str, Any]]:
    report = json.loads(stdout)
    return {(c["area"], c["name"]): c for c in report["checks"]}


@pytest.mark.server
async def test_a_healthy_instance(clean_backend: Backend, tmp_path: Path) -> None:
    async with running_fake_llm(api_key="right-key") as fake:
        env = server_env(clean_backend, tmp_path, f"{REDIS_PREFIX_ROOT}doctor:")
        env.update(config(tmp_path / "relaychat.yaml", fake, key="right-key", broken=False))
        upgraded = await relaychat_async(env, "db", "upgrade")
        assert upgraded.exit_code == 0, upgraded.stderr
        result = await relaychat_async(env, "doctor", "--json")
        # The table, as an operator reads it.
        table = await relaychat_async(env, "doctor")
    assert result.exit_code == 0, result.stdout
    found = rows(result.stdout)
    assert json.loads(result.stdout)["verdict"] == "ok"
    assert {c["status"] for c in found.values()} == {"ok"}, found
    assert found[("endpoints", "fake (custom)")]["detail"] == "2 models offered"
    assert found[("mcp", "time")]["detail"].startswith("running, 2 tools")
    database = next(c for (area, _), c in found.items() if area == "database")
    assert "reachable, schema at" in database["detail"]
    redis = next(c for (area, _), c in found.items() if area == "redis")
    if clean_backend.redis_url:
        assert redis["detail"].startswith("answers (Redis ")
    else:
        assert redis["detail"].startswith("not configured")
    assert table.exit_code == 0
    assert table.stdout.rstrip().endswith("healthy")


@pytest.mark.server
async def test_what_is_broken_is_found(
    clean_backend: Backend, tmp_path: Path, receiver: Receiver, fake_twilio: FakeTwilio
) -> None:
    env = server_env(clean_backend, tmp_path, f"{REDIS_PREFIX_ROOT}doctor2:")
    env.update(WEBHOOK_ALLOW_PRIVATE_NETWORKS="true")
    async with running_fake_llm(api_key="right-key") as fake:
        env.update(config(tmp_path / "relaychat.yaml", fake, key=WRONG_KEY, broken=True))
        # A webhook on loopback, registered while private networks were allowed.
        async with running_server(env) as base, httpx.AsyncClient(base_url=base) as http:
            user = await make_user(http)
            hook = await register(http, user, receiver, events=["message.created"])
            right = await make_channel(http, user, fake_twilio, name="Right token")
            wrong = await make_channel(
                http, user, fake_twilio, name="Wrong token", auth_token=WRONG_TWILIO_TOKEN
            )
        env.pop("WEBHOOK_ALLOW_PRIVATE_NETWORKS")
        result = await relaychat_async(env, "doctor", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["verdict"] == "fail"
    found = rows(result.stdout)
    assert found[("endpoints", "fake (custom)")] == {
        "area": "endpoints",
        "name": "fake (custom)",
        "status": "fail",
        "detail": "authentication failed: the endpoint refused its API key (wrong, revoked "
        "or for another account)",
    }
    nowhere = found[("endpoints", "nowhere (custom)")]
    assert nowhere["status"] == "fail" and nowhere["detail"].startswith("unreachable at 127.0.0.1:")
    ghost = found[("mcp", "ghost")]
    assert ghost["status"] == "fail" and ghost["detail"].startswith("does not start")
    assert found[("mcp", "time")]["status"] == "ok"
    target = found[("webhooks", f"{hook['id']} (127.0.0.1)")]
    assert target["status"] == "fail" and target["detail"].startswith("target refused")
    refused = found[("channels", f"Wrong token ({wrong['id']})")]
    assert refused["status"] == "fail" and "Twilio refused" in refused["detail"]
    accepted = found[("channels", f"Right token ({right['id']})")]
    assert accepted == {
        "area": "channels",
        "name": f"Right token ({right['id']})",
        "status": "ok",
        "detail": "Twilio accepts its credentials",
    }
    # Never the key, nor the webhook URL's path (URLs often carry tokens).
    assert WRONG_KEY not in result.stdout + result.stderr
    assert WRONG_TWILIO_TOKEN not in result.stdout + result.stderr
    assert receiver.url not in result.stdout


async def test_loose_file_modes_and_placeholders(clean_backend: Backend, tmp_path: Path) -> None:
    env = server_env(
        clean_backend, tmp_path, f"{REDIS_PREFIX_ROOT}doctor3:", config=tmp_path / "none.yaml"
    )
    # The server generates its secrets in the data dir; one left readable by others.
    secret = tmp_path / "jwt_secret"
    secret.write_text("x" * 64)
    secret.chmod(0o644)
    result = await relaychat_async(env, "doctor", "--json")
    assert result.exit_code == 1
    modes = rows(result.stdout)[("settings", "file modes")]
    assert modes["status"] == "fail" and "jwt_secret is 0644 (want 0600)" in modes["detail"]

    env["JWT_SECRET"] = "changeme"
    placeholder = await relaychat_async(env, "doctor", "--json")
    assert placeholder.exit_code == 1
    (only,) = json.loads(placeholder.stdout)["checks"]
    assert only["area"] == "settings" and only["status"] == "fail"
    assert "JWT_SECRET" in only["detail"]


async def test_admins_only_over_http(clean_backend: Backend, tmp_path: Path) -> None:
    env = server_env(
        clean_backend, tmp_path, f"{REDIS_PREFIX_ROOT}doctor4:", config=tmp_path / "none.yaml"
    )
    async with running_server(env) as base, httpx.AsyncClient(base_url=base) as http:
        admin = await make_user(http)  # the first account is the admin
        user = await make_user(http)
        answered = await http.get("/api/admin/doctor", headers=admin.headers)
        refused = await http.get("/api/admin/doctor", headers=user.headers)
        anonymous = await http.get("/api/admin/doctor")
    assert answered.status_code == 200, answered.text
    body = answered.json()
    assert body["verdict"] in ("ok", "warn")
    assert {c["area"] for c in body["checks"]} >= {"settings", "database", "redis", "disk"}
    assert refused.status_code == 403 and refused.json()["code"] == "admin_required"
    assert anonymous.status_code == 401
