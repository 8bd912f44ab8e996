"""Markdown to safe HTML for the browser: raw HTML off, only web and mail links, Pygments code.

Messages come from people, models and external systems alike, so none of their text is
trusted: markdown-it escapes everything it does not turn into markup itself, links are
kept only for http(s), mailto and relative targets, images are not rendered (they would
load from other hosts), and code is highlighted with CSS classes, never inline styles
(the pages' Content-Security-Policy forbids those).
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

_SAFE_SCHEMES = ("http:", "https:", "mailto:")
LINK_REL = "noopener noreferrer nofollow"
# Pygments styles of the code blocks: one for light pages, one for dark ones.
LIGHT_STYLE = "default"
DARK_STYLE = "monokai"
_formatter = HtmlFormatter(nowrap=True)


class _SafeLinks(MarkdownIt):
    def validateLink(self, url: str) -> bool:
        """Web and mail links, and relative ones; never javascript:, data:, vbscript:, file:."""
        target = url.strip().lower()
        scheme, colon, _ = target.partition(":")
        if not colon or "/" in scheme or "?" in scheme or "#" in scheme:
            return True  # relative: no scheme before the first colon
        return target.startswith(_SAFE_SCHEMES)


def _highlight(code: str, lang: str, _attrs: str) -> str:
    if not lang:
        return ""  # markdown-it escapes it
    try:
        lexer = get_lexer_by_name(lang)
    except ClassNotFound:
        return ""
    return str(highlight(code, lexer, _formatter))


def _link_open(
    renderer: RendererHTML,
    tokens: Sequence[Token],
    idx: int,
    options: OptionsDict,
    env: EnvType,
) -> str:
    tokens[idx].attrSet("rel", LINK_REL)
    return renderer.renderToken(tokens, idx, options, env)


def _parser() -> MarkdownIt:
    md = _SafeLinks(
        "commonmark",
        {"html": False, "linkify": False, "typographer": False, "highlight": _highlight},
    )
    md.enable(["table", "strikethrough"])
    md.disable("image")
    md.add_render_rule("link_open", _link_open)
    return md


_md = _parser()
# A message that is only tool calls or results shows them open up to this size; longer
# ones, and an agent's steps beside its answer, start folded.
SHORT_TOOL_CHARS = 400
SHORT_TOOL_LINES = 8


@lru_cache(maxsize=4096)
def render_markdown(text: str) -> str:
    """The HTML of `text` (markdown); everything in it is escaped or safe markup."""
    rendered: str = _md.render(text)
    return rendered


def render_parts(content: list[dict[str, Any]], text: str) -> str:
    """A message's HTML: text parts as markdown, tool calls and results as disclosures."""
    if not content:
        return render_markdown(text)
    out: list[str] = []
    # Without text of its own, the calls (or results) are what the message says.
    only_tools = not any(p.get("type") == "text" and p.get("text") for p in content)
    for part in content:
        kind = part.get("type")
        if kind == "text":
            out.append(render_markdown(str(part.get("text") or "")))
        elif kind in ("tool_call", "tool_result"):
            out.append(_tool_html(part, unfold=only_tools))
    return "".join(out)


def _tool_html(part: dict[str, Any], *, unfold: bool) -> str:
    """A call (name, id, arguments) or result as a disclosure, open with `unfold` when short
    enough to read at a glance (the chat page draws the same, chat.js `toolBlock`)."""
    call = part.get("type") == "tool_call"
    label = "Tool call" if call else ("Tool error" if part.get("is_error") else "Tool result")
    body = part.get("arguments") if call else part.get("content")
    shown = body if isinstance(body, str) else json.dumps(body, indent=2, ensure_ascii=False)
    name = html.escape(str(part.get("name") or "tool"))
    call_id = part.get("id") if call else part.get("tool_call_id")
    ident = f'<span class="tool-id">{html.escape(str(call_id))}</span>' if call_id else ""
    short = unfold and len(shown) <= SHORT_TOOL_CHARS and shown.count("\n") < SHORT_TOOL_LINES
    kind = "tool-call" if call else "tool-result"
    return (
        f'<details class="tool {kind}"{" open" if short else ""}>'
        f"<summary>{label}: <code>{name}</code>{ident}</summary>"
        f"<pre><code>{html.escape(shown)}</code></pre></details>"
    )


def highlight_css() -> str:
    """The code-block styles: light by default, dark under `prefers-color-scheme: dark`."""
    light, dark = (_token_rules(style) for style in (LIGHT_STYLE, DARK_STYLE))
    return f"{light}\n@media (prefers-color-scheme: dark) {{\n{dark}\n}}\n"


def _token_rules(style: str) -> str:
    # Only the rules scoped to code blocks: Pygments also styles bare `pre` and line numbers.
    scope = ".md pre code"
    rules = str(HtmlFormatter(style=style).get_style_defs(scope)).splitlines()  # type: ignore[no-untyped-call]
    # Token colours only: the block's own background is the page's, in both themes.
    return "\n".join(rule for rule in rules if rule.startswith(f"{scope} ."))
