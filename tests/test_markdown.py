"""Tool calls and results in a message's HTML: named, with their call's id, escaped, and
open only where they are the message and short enough to read at a glance."""

from __future__ import annotations

from relaychat.markdown import SHORT_TOOL_CHARS, render_parts

CALL = {
    "type": "tool_call",
    "id": "call_<1>",
    "name": "get_<weather>",
    "arguments": {"city": "<b>Paris</b>"},
}


def test_a_message_of_tool_calls_only_shows_them_open() -> None:
    html = render_parts([CALL], "")
    assert html.startswith('<details class="tool tool-call" open>')
    assert "<summary>Tool call: <code>get_&lt;weather&gt;</code>" in html
    assert '<span class="tool-id">call_&lt;1&gt;</span>' in html
    assert "&lt;b&gt;Paris&lt;/b&gt;" in html
    assert "<b>" not in html


def test_a_long_payload_starts_folded() -> None:
    long = {**CALL, "arguments": {"text": "x" * SHORT_TOOL_CHARS}}
    assert render_parts([long], "").startswith('<details class="tool tool-call">')
    lines = {"type": "tool_result", "tool_call_id": "c", "content": "a\n" * 8}
    assert render_parts([lines], "").startswith('<details class="tool tool-result">')


def test_an_agents_steps_beside_its_answer_stay_folded() -> None:
    result = {"type": "tool_result", "tool_call_id": "call_<1>", "content": "22 C"}
    html = render_parts([CALL, result, {"type": "text", "text": "Sunny."}], "Sunny.")
    assert " open>" not in html
    assert html.count("<details") == 2
    assert "Tool result: <code>tool</code>" in html  # a result without its tool's name
    assert html.endswith("<p>Sunny.</p>\n")
