"""The catalog's search index: one box over name, entity, owner, tag and description,
exact filters, ranking, pagination, and bounded queries; no I/O."""

from __future__ import annotations

import doctest

import pytest

from featurekube import errors
from featurekube.catalog import model, search


def entry(name: str, **fields: object) -> model.Entry:
    values: dict[str, object] = {
        "kind": "FeatureView",
        "namespace": "rides",
        "name": name,
        "owner": "eta-team",
        "description": "",
        "entities": ("driver_id",),
        "tags": (),
        "features": (),
        "ready": "True",
    }
    values.update(fields)
    return model.Entry(**values)  # type: ignore[arg-type]


INDEX = search.Index(
    [
        entry("driver-trip-stats", description="Rolling trip counts", tags=(("team", "ml"),)),
        entry("driver-profile", owner="profile-team", features=("rating",)),
        entry("rider-features", entities=("rider_id",), namespace="payments"),
        entry("eta-model", kind="FeatureService", tags=(("team", "eta"),)),
    ]
)


def names(query: search.Query) -> list[str]:
    return [hit.name for hit in INDEX.search(query).hits]


def test_a_word_finds_by_name_entity_owner_tag_description_and_feature() -> None:
    assert names(search.parse_query("profile")) == ["driver-profile"]
    assert names(search.parse_query("rider_id")) == ["rider-features"]
    assert names(search.parse_query("profile-team")) == ["driver-profile"]
    assert names(search.parse_query("team=ml")) == ["driver-trip-stats"]
    assert names(search.parse_query("rolling")) == ["driver-trip-stats"]
    assert names(search.parse_query("rating")) == ["driver-profile"]


def test_every_word_must_match() -> None:
    assert names(search.parse_query("driver rolling")) == ["driver-trip-stats"]
    assert names(search.parse_query("driver nothing-like-it")) == []


def test_the_name_ranks_before_other_fields() -> None:
    # "eta" is eta-model's name and eta-team, every view's owner.
    assert names(search.parse_query("eta"))[0] == "eta-model"


def test_filters_in_the_box_and_in_the_form_agree() -> None:
    boxed = names(search.parse_query("namespace:payments"))
    formed = names(search.parse_query("", namespace="payments"))
    assert boxed == formed == ["rider-features"]
    assert names(search.parse_query("", entity="driver_id", kind="service")) == ["eta-model"]
    assert names(search.parse_query("owner:profile-team")) == ["driver-profile"]
    assert names(search.parse_query("tag:team")) == ["driver-trip-stats", "eta-model"]
    assert names(search.parse_query("tag:team=eta")) == ["eta-model"]


def test_results_are_paged() -> None:
    index = search.Index([entry(f"view-{i:04d}") for i in range(120)])

    first = index.search(search.parse_query("view"), page_size=50)
    last = index.search(search.parse_query("view", page=3), page_size=50)

    assert (first.total, first.pages, len(first.hits)) == (120, 3, 50)
    assert [h.name for h in last.hits][:1] == ["view-0100"] and len(last.hits) == 20


def test_facets_count_each_filter_value() -> None:
    assert ("rides", 3) in INDEX.facets.namespaces
    assert ("driver_id", 3) in INDEX.facets.entities
    assert ("team=ml", 1) in INDEX.facets.tags


@pytest.mark.parametrize(
    ("text", "filters", "page", "complaint"),
    [
        ("x" * (search.MAX_QUERY_LENGTH + 1), {}, 1, "at most 256"),
        (" ".join(["w"] * (search.MAX_WORDS + 1)), {}, 1, "at most 16"),
        ("", {"colour": "red"}, 1, "unknown search filter 'colour'"),
        ("kind:table", {}, 1, "use kind:view or kind:service"),
        ("", {}, 0, "pages go from 1"),
    ],
)
def test_malformed_or_long_queries_are_refused_saying_why(
    text: str, filters: dict[str, str], page: int, complaint: str
) -> None:
    with pytest.raises(errors.CatalogQueryError, match=complaint):
        search.parse_query(text, page=page, **filters)


def test_the_query_is_written_back_for_the_box() -> None:
    assert search.parse_query("trips owner:ml").text == "trips owner:ml"


def test_docstring_examples() -> None:
    assert doctest.testmod(search).failed == 0
