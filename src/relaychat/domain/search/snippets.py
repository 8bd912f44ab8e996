"""Snippets of a found text with the searched words marked, as data: a list of segments
that a client renders as text (the browser builds <mark> elements), never HTML.

The marks are found here, on both databases, by the same word rule the index uses (see
`query.WORD`): a word is marked when it is one of the query's words, or starts with a
prefix term's last word. A stemming SEARCH_LANGUAGE (`english`, on either database) finds
more forms than are marked; the result is still right, its marks a little sparse.
"""

from __future__ import annotations

from dataclasses import dataclass

from relaychat.domain.search.query import WORD, SearchQuery, normalise

# Characters of context kept before the first mark, and the snippet's length.
BEFORE = 60
LENGTH = 220


@dataclass(frozen=True)
class Segment:
    text: str
    match: bool


def _matcher(query: SearchQuery) -> tuple[frozenset[str], tuple[str, ...]]:
    exact: set[str] = set()
    prefixes: list[str] = []
    for term in query.include:
        exact.update(term.words[:-1] if term.prefix else term.words)
        if term.prefix:
            prefixes.append(term.words[-1])
    return frozenset(exact), tuple(prefixes)


def marked_spans(text: str, query: SearchQuery) -> list[tuple[int, int]]:
    """The (start, end) of every word of `text` the query matches."""
    exact, prefixes = _matcher(query)
    spans = []
    for found in WORD.finditer(text):
        word = normalise(found.group())
        # A phone's national digits find its full number (the index holds both).
        national = word.isdigit() and any(e.isdigit() and word.endswith(e) for e in exact)
        if word in exact or word.startswith(prefixes) or national:
            spans.append(found.span())
    return spans


def snippet(text: str, query: SearchQuery) -> list[Segment] | None:
    """A window of `text` around its first matched word, split into marked and plain
    segments; None when no word of `text` matches."""
    spans = marked_spans(text, query)
    if not spans:
        return None
    start = max(0, spans[0][0] - BEFORE)
    if start:
        # Start on a word boundary, not in the middle of one.
        space = text.find(" ", start, spans[0][0])
        start = space + 1 if space != -1 else start
    end = min(len(text), start + LENGTH)
    if end < len(text):
        space = text.rfind(" ", max(spans[0][1], start), end)
        end = space if space > spans[0][0] else end
    segments: list[Segment] = []
    if start:
        segments.append(Segment("…", False))
    at = start
    for low, high in spans:
        if high <= start or low >= end:
            continue
        low, high = max(low, start), min(high, end)
        if low > at:
            segments.append(Segment(text[at:low], False))
        segments.append(Segment(text[low:high], True))
        at = high
    if at < end:
        segments.append(Segment(text[at:end], False))
    if end < len(text):
        segments.append(Segment("…", False))
    return segments


def plain(text: str) -> list[Segment]:
    """The start of `text`, unmarked (a document found by what is not shown)."""
    if len(text) <= LENGTH:
        return [Segment(text, False)] if text else []
    return [Segment(text[:LENGTH], False), Segment("…", False)]
