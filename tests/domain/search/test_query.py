"""The search box's language: parsed into words only, rendered quoted for each database."""

from __future__ import annotations

import pytest

from relaychat.domain.search.query import (
    SearchQuery,
    SearchQueryEmpty,
    Term,
    fts5_match,
    parse,
    tsquery,
)
from relaychat.domain.search.snippets import marked_spans, snippet


@pytest.mark.parametrize(
    ("q", "include", "exclude"),
    [
        ("Deploy staging", [Term(("deploy",)), Term(("staging",))], []),
        ('"staging server" -prod', [Term(("staging", "server"))], [Term(("prod",))]),
        ("deploy*", [Term(("deploy",), prefix=True)], []),
        ('-"a b" c', [Term(("c",))], [Term(("a", "b"))]),
        ("+1 (415) 555-2671", [Term(("14155552671",), prefix=True)], []),
        ('NEAR("x y" 2)', [Term(("near",)), Term(("x", "y")), Term(("2",))], []),
        ("body:secret", [Term(("body", "secret"))], []),
        ("Ünïcode_snake", [Term(("unicode", "snake"))], []),
    ],
)
def test_parse(q: str, include: list[Term], exclude: list[Term]) -> None:
    assert parse(q) == SearchQuery(tuple(include), tuple(exclude))


@pytest.mark.parametrize("q", ["*", "-", '""', '"', "-a -b", "   ", "***", "-*"])
def test_no_word_to_find_is_refused(q: str) -> None:
    with pytest.raises(SearchQueryEmpty) as refused:
        parse(q)
    assert refused.value.fields == {"field": "q"}


def test_renderings_hold_nothing_but_quoted_words() -> None:
    query = parse('deploy* "a b" -c')
    assert fts5_match(query, "u1") == (
        'owner : "u1" AND ({body sender} : ("deploy"* AND "a b")) NOT ({body sender} : ("c"))'
    )
    assert tsquery(query) == "('deploy':*) & ('a' <-> 'b') & !('c')"


def test_snippets_mark_words_prefixes_and_national_numbers() -> None:
    query = parse("deploy* staging 4155552671")
    text = "Staging: deployed, redeploy, +14155552671"
    marked = [text[a:b] for a, b in marked_spans(text, query)]
    assert marked == ["Staging", "deployed", "14155552671"]
    long = "word " * 100 + "staging here " + "tail " * 100
    segments = snippet(long, query)
    assert segments is not None
    assert segments[0].text == "…" and segments[-1].text == "…"
    assert [s.text for s in segments if s.match] == ["staging"]
    assert snippet("nothing to see", query) is None
