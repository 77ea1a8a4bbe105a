"""The catalog's search: one box over name, entity, owner, tag, description and feature
names, with filters by namespace, entity, owner and tag; pure.

An :class:`Index` is built once per listing of the cluster (lower-cased fields kept
beside each entry), then answers any number of queries without I/O::

    >>> from featurekube.catalog import model
    >>> entry = model.Entry("FeatureView", "rides", "driver-trip-stats", "eta-team",
    ...     "Trips per driver", ("driver_id",), (("team", "eta"),), ("trips_1d",), "True")
    >>> index = Index([entry])
    >>> [e.name for e in index.search(parse_query("trips owner:eta-team")).hits]
    ['driver-trip-stats']

A query's words must all match (each in any field); ``field:value`` words filter
exactly: ``namespace:``, ``entity:``, ``owner:``, ``tag:KEY`` or ``tag:KEY=VALUE``,
``kind:view`` or ``kind:service``. Hits are ranked by where the words matched, the
name first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from featurekube import errors
from featurekube.catalog import model

__all__ = [
    "FILTERS",
    "MAX_QUERY_LENGTH",
    "MAX_WORDS",
    "PAGE_SIZE",
    "Facets",
    "Index",
    "Query",
    "Results",
    "parse_query",
]

MAX_QUERY_LENGTH = 256
"""The longest query (characters, words and filters together) the catalog takes."""
MAX_WORDS = 16
"""The most words and filters in one query."""
PAGE_SIZE = 50
"""Hits per page of results."""
MAX_PAGE = 10_000
"""The highest page number asked for."""
FILTERS = ("namespace", "entity", "owner", "tag", "kind")
"""The ``field:value`` filters a query may hold."""

_KINDS = {"view": "FeatureView", "service": "FeatureService"}


@dataclass(frozen=True)
class Query:
    """A parsed query: words to look for, and exact filters (empty: no filter)."""

    words: tuple[str, ...] = ()
    namespace: str = ""
    entity: str = ""
    owner: str = ""
    tag: str = ""
    kind: str = ""
    page: int = 1

    @property
    def text(self) -> str:
        """The query written back as one search box line."""
        parts = list(self.words)
        for name in FILTERS:
            value = getattr(self, name)
            if value:
                parts.append(f"{name}:{value}")
        return " ".join(parts)


def parse_query(text: str, *, page: int = 1, **filters: str) -> Query:
    """Parse the search box's ``text`` and the form's ``filters`` (those of
    :data:`FILTERS`); a filter in the text overrides the form's.

    Raises :class:`errors.CatalogQueryError` for a query longer than
    :data:`MAX_QUERY_LENGTH`, with more than :data:`MAX_WORDS` words, an unknown
    ``field:`` or filter, or a page outside 1..MAX_PAGE.
    """
    total = len(text) + sum(len(v) for v in filters.values())
    if total > MAX_QUERY_LENGTH:
        raise errors.CatalogQueryError(
            f"the search is {total} characters long; the catalog takes at most "
            f"{MAX_QUERY_LENGTH}: search for fewer or shorter words"
        )
    unknown = sorted(set(filters) - set(FILTERS))
    if unknown:
        raise errors.CatalogQueryError(
            f"unknown search filter {unknown[0]!r}: use one of {', '.join(FILTERS)}"
        )
    if not 1 <= page <= MAX_PAGE:
        raise errors.CatalogQueryError(
            f"page {page} of search results does not exist: pages go from 1 to {MAX_PAGE}"
        )
    chosen = {name: " ".join(filters.get(name, "").split()).lower() for name in FILTERS}
    words: list[str] = []
    tokens = text.split()
    if len(tokens) > MAX_WORDS:
        raise errors.CatalogQueryError(
            f"the search has {len(tokens)} words; the catalog takes at most {MAX_WORDS}"
        )
    for token in tokens:
        name, sep, value = token.partition(":")
        if sep and name.lower() in FILTERS and value:
            chosen[name.lower()] = value.lower()
        else:
            words.append(token.lower())
    if chosen["kind"] and chosen["kind"] not in _KINDS:
        raise errors.CatalogQueryError(
            f"kind:{chosen['kind']} is not a kind the catalog shows: use kind:view or kind:service"
        )
    return Query(words=tuple(words), page=page, **chosen)


@dataclass(frozen=True)
class Facets:
    """The values each filter can take among all entries, with how many entries have each."""

    namespaces: tuple[tuple[str, int], ...]
    entities: tuple[tuple[str, int], ...]
    owners: tuple[tuple[str, int], ...]
    tags: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Results:
    """One page of hits."""

    query: Query
    hits: tuple[model.Entry, ...]
    total: int
    page: int
    pages: int


@dataclass(frozen=True)
class _Indexed:
    entry: model.Entry
    name: str
    entities: tuple[str, ...]
    owner: str
    tags: tuple[str, ...]
    """Each tag as ``key=value``."""
    text: str
    """Description and feature names, lower-cased."""


class Index:
    """Entries prepared for searching; built once per listing, read by many queries."""

    def __init__(self, entries: Iterable[model.Entry]) -> None:
        self._items = tuple(
            _Indexed(
                entry=e,
                name=e.name.lower(),
                entities=tuple(x.lower() for x in e.entities),
                owner=e.owner.lower(),
                tags=tuple(f"{k}={v}".lower() for k, v in e.tags),
                text=" ".join((e.description, *e.features)).lower(),
            )
            for e in entries
        )
        self.facets = Facets(
            namespaces=_counted(e.namespace for e in (i.entry for i in self._items)),
            entities=_counted(x for i in self._items for x in i.entry.entities),
            owners=_counted(i.entry.owner for i in self._items),
            tags=_counted(f"{k}={v}" for i in self._items for k, v in i.entry.tags),
        )

    def __len__(self) -> int:
        return len(self._items)

    def search(self, query: Query, page_size: int = PAGE_SIZE) -> Results:
        """The hits of ``query``, best first, one page of them."""
        scored: list[tuple[int, int, str, str, model.Entry]] = []
        for item in self._items:
            if not _passes(item, query):
                continue
            score = 0
            for word in query.words:
                found = _score(item, word)
                if not found:
                    break
                score += found
            else:
                entry = item.entry
                # Views before services, then by namespace and name.
                kind = 0 if entry.kind == "FeatureView" else 1
                scored.append((-score, kind, entry.namespace, entry.name, entry))
        scored.sort(key=lambda s: s[:4])
        pages = max((len(scored) + page_size - 1) // page_size, 1)
        page = min(query.page, pages)
        chosen = scored[(page - 1) * page_size : page * page_size]
        return Results(query, tuple(s[4] for s in chosen), len(scored), page, pages)


def _counted(values: Iterable[str]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(Counter(values).items()))


def _passes(item: _Indexed, query: Query) -> bool:
    entry = item.entry
    if query.kind and entry.kind != _KINDS[query.kind]:
        return False
    if query.namespace and entry.namespace != query.namespace:
        return False
    if query.owner and item.owner != query.owner:
        return False
    if query.entity and query.entity not in item.entities:
        return False
    if query.tag:
        if "=" in query.tag:
            return query.tag in item.tags
        return any(t.partition("=")[0] == query.tag for t in item.tags)
    return True


def _score(item: _Indexed, word: str) -> int:
    """How well ``word`` matches: 0 not at all, more for the name than elsewhere."""
    if item.name == word:
        return 100
    if item.name.startswith(word):
        return 60
    if word in item.name:
        return 40
    if word in item.entities or word == item.owner:
        return 30
    if _any_contains(item.entities, word) or word in item.owner or _any_contains(item.tags, word):
        return 20
    if word in item.text:
        return 10
    return 0


def _any_contains(values: Sequence[str], word: str) -> bool:
    return any(word in value for value in values)
