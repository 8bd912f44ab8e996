"""A conversation made through /v1 with the caller's own tools: the reply that only calls
tools shows its calls, and the `role: tool` results show as compact steps naming their
tool and call id, short ones open, long ones folded; live and after a reload."""

from __future__ import annotations

import json
from pathlib import Path

from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam
from playwright.sync_api import Dialog, Page, expect

from tests.browser.harness import Person, Server
from tests.browser.ui import messages, sign_in

WEATHER: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
FORECAST: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_forecast",
        "description": "Hour by hour",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
# Long enough to start folded; markup in it must stay text.
FORECAST_TEXT = "\n".join(f"{hour:02d}:00 <b>{15 + hour % 7} C</b>" for hour in range(24)) + (
    '\n<img src=x onerror="window.__pwned = 1">'
)


def token_of(server: Server, person: Person) -> str:
    with server.api() as http:
        login = http.post(
            "/api/auth/login", json={"email": person.email, "password": person.password}
        )
    assert login.status_code == 200, login.text
    token: str = login.json()["access_token"]
    return token


def test_tool_calls_and_tool_results_from_v1_are_shown(
    page: Page, server: Server, person: Person, artifacts: Path
) -> None:
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    script = {
        "script": [
            {
                "tool_calls": [
                    {"name": "get_weather", "arguments": {"city": "Paris"}},
                    {"name": "get_forecast", "arguments": {"city": "Paris"}},
                ]
            },
            "Sunny in Paris, **22 C**.",
        ]
    }
    question: ChatCompletionMessageParam = {
        "role": "user",
        "content": f"!fake {json.dumps(script)}\nWeather in Paris?",
    }
    openai = OpenAI(base_url=f"{server.url}/v1", api_key=token_of(server, person), max_retries=0)
    raw = openai.chat.completions.with_raw_response.create(
        model="fake/fake-model", messages=[question], tools=[WEATHER, FORECAST]
    )
    conversation_id = raw.headers["x-relaychat-conversation-id"]
    calls = raw.parse().choices[0].message.tool_calls or []
    assert [c.function.name for c in calls if c.type == "function"] == [
        "get_weather",
        "get_forecast",
    ]

    sign_in(page, server, person)
    page.goto(f"{server.url}/c/{conversation_id}")
    shown = messages(page)
    expect(shown).to_have_count(2)
    asked = shown.nth(1)
    weather_call = asked.locator("details.tool").filter(has_text="Tool call: get_weather")
    expect(weather_call).to_contain_text(calls[0].id)
    # A reply that is only tool calls says them: names and arguments, not an empty bubble.
    expect(weather_call.get_by_text('"city": "Paris"')).to_be_visible()
    expect(asked.locator("details.tool").filter(has_text="Tool call: get_forecast")).to_be_visible()

    # The caller runs the tools and sends their results back: they arrive live.
    openai.chat.completions.create(
        model="fake/fake-model",
        messages=[
            question,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.function.name, "arguments": c.function.arguments},
                    }
                    for c in calls
                    if c.type == "function"
                ],
            },
            {"role": "tool", "tool_call_id": calls[0].id, "content": "22 C, clear"},
            {"role": "tool", "tool_call_id": calls[1].id, "content": FORECAST_TEXT},
        ],
        tools=[WEATHER, FORECAST],
        extra_body={"conversation_id": conversation_id},
    )

    def check() -> None:
        expect(shown).to_have_count(5, timeout=20_000)
        weather, forecast = shown.nth(2), shown.nth(3)
        expect(weather).to_have_accessible_name("Tool said")
        # The result names its tool (from the call it answers) and the call's id.
        summary = weather.locator("summary")
        expect(summary).to_have_text(f"Tool result: get_weather{calls[0].id}")
        expect(weather.get_by_text("22 C, clear")).to_be_visible()
        # A long one starts folded, and opens on a click.
        expect(forecast.locator("summary")).to_contain_text("Tool result: get_forecast")
        expect(forecast.get_by_text("07:00")).to_be_hidden()
        expect(shown.nth(4).locator("strong")).to_have_text("22 C")

    def unfold() -> None:
        forecast = shown.nth(3)
        forecast.locator("summary").click()
        expect(forecast.get_by_text("07:00 <b>15 C</b>")).to_be_visible()
        expect(forecast.locator("img, b")).to_have_count(0)

    check()
    page.set_viewport_size({"width": 1440, "height": 1000})
    page.screenshot(path=artifacts / "tool-messages-1440.png")
    unfold()
    page.reload()
    check()
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=artifacts / "tool-messages-1440-dark.png")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 375, "height": 1000})
    page.screenshot(path=artifacts / "tool-messages-375.png")
    unfold()
    assert dialogs == []
    assert page.evaluate("() => window.__pwned") is None
