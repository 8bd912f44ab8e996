"""The search box's little language, parsed by us and rendered for each database.

`deploy staging` (every word), `"exact phrase"`, `deploy*` (prefix), `-word` and
`-"a phrase"` (excluded), `+1 415 555` (a phone number: its digits, as a prefix). Only
words reach the database, each quoted: FTS5 syntax typed by a person (`NEAR`, `col:`,
stray quotes, `*` alone) is text here, so it can neither fail nor widen a query.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from relaychat.errors import ErrorCode, Unprocessable

MAX_TERMS = 16
MAX_QUERY = 500
MAX_WORD = 100

# What FTS5's unicode61 tokenizer and PostgreSQL's parser both take as a word: letters
# and digits; `_` and every other symbol separate words.
WORD = re.compile(r"[^\W_]+")
# A phrase (maybe unterminated), or a run of anything but spaces and quotes.
_PIECE = re.compile(r'(-?)"([^"]*)"?(\*?)|(-?)([^\s"]+)')
# `+` then digits with the usual separators: a phone number, typed as people do.
_PHONE = re.compile(r"\+\d[\d ().-]*\d")


class SearchQueryEmpty(Unprocessable):
    code = ErrorCode.SEARCH_QUERY_EMPTY
    title = "The search query has no word to look for"


@dataclass(frozen=True)
class Term:
    """One word or phrase (normalised words); `prefix`: its last word is a prefix."""

    words: tuple[str, ...]
    prefix: bool = False


@dataclass(frozen=True)
class SearchQuery:
    include: tuple[Term, ...]
    exclude: tuple[Term, ...]


def normalise(word: str) -> str:
    """Case- and accent-folded, as FTS5's `remove_diacritics` and our highlighting see it."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def parse(q: str) -> SearchQuery:
    """The terms of `q`; 422 `search_query_empty` (field `q`) when no word is left to find."""
    q = _PHONE.sub(lambda match: re.sub(r"\D", "", match.group()) + "*", q)
    include: list[Term] = []
    exclude: list[Term] = []
    for match in _PIECE.finditer(q):
        if match.group(2) is not None:
            negated, body, prefix = match.group(1) == "-", match.group(2), match.group(3) == "*"
        else:
            negated, body = match.group(4) == "-", match.group(5)
            prefix = body.endswith("*")
        words = tuple(normalise(word)[:MAX_WORD] for word in WORD.findall(body))
        if words:
            (exclude if negated else include).append(Term(words, prefix))
    if not include:
        raise SearchQueryEmpty(
            "the query has no word to look for: add a word that is not excluded", field="q"
        )
    # Beyond a handful of words a query only gets slower, never better.
    return SearchQuery(tuple(include[:MAX_TERMS]), tuple(exclude[:MAX_TERMS]))


def _fts5_term(term: Term) -> str:
    # Words hold no quote (see WORD); doubling one anyway keeps this safe on its own.
    phrase = " ".join(term.words).replace('"', '""')
    return f'"{phrase}"' + ("*" if term.prefix else "")


def fts5_match(query: SearchQuery, owner_token: str) -> str:
    """An FTS5 MATCH expression: the owner's documents, every included term in their text
    or sender, none of the excluded ones."""
    columns = "{body sender}"
    expression = f'owner : "{owner_token}" AND ({columns} : ('
    expression += " AND ".join(_fts5_term(term) for term in query.include) + "))"
    if query.exclude:
        expression += f" NOT ({columns} : ("
        expression += " OR ".join(_fts5_term(term) for term in query.exclude) + "))"
    return expression


def _tsquery_term(term: Term) -> str:
    # Quoted operands: the configuration still normalises (stems) each word.
    words = [f"'{word}'" for word in term.words]
    if term.prefix:
        words[-1] += ":*"
    return "(" + " <-> ".join(words) + ")"


def tsquery(query: SearchQuery) -> str:
    """Text for PostgreSQL's `to_tsquery`, built from words only."""
    parts = [_tsquery_term(term) for term in query.include]
    parts += ["!" + _tsquery_term(term) for term in query.exclude]
    return " & ".join(parts)


def owner_token(user_id: str) -> str:
    """The token of `user_id` in the index's `owner` column (as migration 0010 writes it)."""
    return "u" + user_id.replace("-", "")
