"""The agents page: build an agent with a built-in and a single MCP tool, chat with it."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.harness import Server, register, serve
from tests.browser.ui import messages, send, sign_in

ENV_SERVER = Path(__file__).resolve().parents[1] / "llm" / "mcp" / "env_server.py"
# One MCP server that runs (its one tool answers its environment), one that cannot start.
MCP_CONFIG = f"""
mcp_servers:
  env:
    command: {sys.executable}
    args: [{json.dumps(str(ENV_SERVER))}]
  broken:
    command: relaychat-no-such-mcp-server
"""


@pytest.fixture(scope="module")
def mcp_server(
    browser_type_launch_args: dict[str, Any],
    fake_llm_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """A server with the two MCP servers configured."""
    yield from serve(tmp_path_factory.mktemp("agents"), fake_llm_url, MCP_CONFIG)


def _agents_of(server: Server, email: str, password: str) -> list[dict[str, Any]]:
    with server.api() as http:
        login = http.post("/api/auth/login", json={"email": email, "password": password})
        auth = {"authorization": f"Bearer {login.json()['access_token']}"}
        listed = http.get("/api/agents", headers=auth)
        assert listed.status_code == 200, listed.text
        agents: list[dict[str, Any]] = listed.json()["agents"]
        return agents


def test_build_an_agent_with_a_builtin_and_an_mcp_tool_and_chat_with_it(
    page: Page, mcp_server: Server, artifacts: Path
) -> None:
    person = register(mcp_server, "Ann Example")
    sign_in(page, mcp_server, person)
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Agents").click()
    expect(page).to_have_url(re.compile("/agents$"))
    expect(page.get_by_role("heading", name="Agents", level=2)).to_be_visible()

    # Each server under its name, with its state; the broken one says why.
    servers = page.locator("section.servers")
    expect(servers.get_by_role("row", name=re.compile("env"))).to_contain_text(
        "running", timeout=30_000
    )
    broken = servers.get_by_role("row", name=re.compile("broken"))
    expect(broken).to_contain_text("failed")
    expect(broken).to_contain_text("relaychat-no-such-mcp-server")

    # A name the API refuses shows next to its field, and nothing is saved.
    page.get_by_role("button", name="New agent").click()
    form = page.locator("form.agent-form")
    form.get_by_role("button", name="Create agent").click()
    expect(form.get_by_label("Name")).to_have_attribute("aria-invalid", "true")
    expect(form.locator(".field:has([name=name]) .field-error")).to_contain_text("at least 1")
    assert _agents_of(mcp_server, person.email, person.password) == []

    form.get_by_label("Name").fill("Env helper")
    form.get_by_label("Instructions").fill("You look things up with your tools.")
    form.get_by_label("Temperature").fill("0.3")
    form.get_by_role("checkbox", name=re.compile(r"^calculator")).check()
    env_group = form.locator(".mcp-server[data-server-name=env]")
    env_group.get_by_role("checkbox", name=re.compile(r"^environment")).check()
    expect(form.locator(".mcp-server[data-server-name=broken]")).to_contain_text("failed")
    page.set_viewport_size({"width": 1440, "height": 1100})
    page.screenshot(path=str(artifacts / "agents-1440.png"), full_page=True)
    form.get_by_role("button", name="Create agent").click()

    row = page.locator(".agent-list tbody tr", has_text="Env helper")
    expect(row).to_contain_text("calculator, env__environment")
    [agent] = _agents_of(mcp_server, person.email, person.password)
    assert agent["tools"] == ["calculator", "env__environment"]
    assert agent["mcp_servers"] == []
    assert agent["model_parameters"] == {"temperature": 0.3}

    page.set_viewport_size({"width": 375, "height": 812})
    page.screenshot(path=str(artifacts / "agents-375.png"), full_page=True)
    page.set_viewport_size({"width": 1440, "height": 900})

    # Chat: the fake model calls the single MCP tool, then answers.
    row.get_by_role("button", name="Chat with Env helper").click()
    expect(page).to_have_url(re.compile(r"/c/[^/]+$"))
    # The agent was made after the chat's picker was filled: the picker offers it now.
    expect(page.locator("#model-picker option:checked")).to_have_text("Agent: Env helper")
    script = {"script": [{"tool_calls": [{"name": "env__environment"}]}, "Looked it up."]}
    send(page, f"!fake {json.dumps(script)}\nWhat is in your environment?")
    reply = messages(page).nth(1)
    expect(reply).to_contain_text("Looked it up.", timeout=30_000)
    # The call, then the result the MCP server gave (its environment, as JSON).
    expect(reply.locator(".tool").first).to_contain_text("Tool call: env__environment")
    expect(reply.locator(".tool").nth(1)).to_contain_text('"PATH"')


def test_edit_keeps_tools_and_delete_asks_first(page: Page, mcp_server: Server) -> None:
    person = register(mcp_server, "Bea Example")
    with mcp_server.api() as http:
        login = http.post(
            "/api/auth/login", json={"email": person.email, "password": person.password}
        )
        auth = {"authorization": f"Bearer {login.json()['access_token']}"}
        created = http.post(
            "/api/agents",
            headers=auth,
            json={
                "name": "Calc",
                "endpoint": "fake",
                "tools": ["calculator"],
                "mcp_servers": ["env"],
                "model_parameters": {"temperature": 1.0, "top_p": 0.5},
            },
        )
        assert created.status_code == 201, created.text
    sign_in(page, mcp_server, person)
    page.goto(f"{mcp_server.url}/agents")
    row = page.locator(".agent-list tbody tr", has_text="Calc")
    row.get_by_role("button", name="Edit Calc").click()
    form = page.locator("form.agent-form")
    expect(form.get_by_role("checkbox", name=re.compile(r"^calculator"))).to_be_checked()
    env_group = form.locator(".mcp-server[data-server-name=env]")
    expect(env_group.get_by_role("checkbox", name=re.compile("All of its tools"))).to_be_checked()
    form.get_by_label("Top p").fill("")  # cleared: the parameter is removed
    form.get_by_label("Name").fill("Calculator")
    form.get_by_role("button", name="Save agent").click()
    expect(page.locator(".agent-list tbody tr", has_text="Calculator")).to_be_visible()
    [agent] = _agents_of(mcp_server, person.email, person.password)
    assert agent["name"] == "Calculator"
    assert agent["tools"] == ["calculator"]
    assert agent["mcp_servers"] == ["env"]
    assert agent["model_parameters"] == {"temperature": 1.0}

    row = page.locator(".agent-list tbody tr", has_text="Calculator")
    row.get_by_role("button", name="Delete Calculator").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    assert len(_agents_of(mcp_server, person.email, person.password)) == 1
    row.get_by_role("button", name="Delete Calculator").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page.locator(".agent-list")).to_contain_text("No agents yet")
    assert _agents_of(mcp_server, person.email, person.password) == []
