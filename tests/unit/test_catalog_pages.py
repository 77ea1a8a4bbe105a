"""The catalog's page data and HTML: a view's and a service's pages from spec and
status, lineage as SVG, request figures from Prometheus metrics, statistics rows, and
every user string escaped; no I/O."""

from __future__ import annotations

import datetime as dt
import doctest
import html.parser
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from featurekube.catalog import lineage, metrics, model, pages, search, statistics
from featurekube.spec import v1alpha1

EXAMPLES = Path(__file__).parents[2] / "examples"
NOW = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
HOSTILE = '<script>alert("owned")</script><img src=x onerror=alert(1)>'


def example(name: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    return body


def trip_stats(**status: Any) -> v1alpha1.FeatureView:
    body = example("driver-trip-stats")
    body["spec"]["expectations"] = [
        {"feature": "trips_1d", "min": 0, "onViolation": "Fail"},
        {"feature": "avg_trip_speed_kmh_30m", "max": 200, "onViolation": "Warn"},
    ]
    body["spec"]["monitoring"] = {
        "drift": {"reference": {"trainingPull": "eta-2026-02"}, "threshold": 0.2}
    }
    body["status"] = status
    return v1alpha1.FeatureView.model_validate(body)


STATUS: dict[str, Any] = {
    "conditions": [{"type": "Ready", "status": "True", "reason": "Materialized"}],
    "version": 2,
    "offlineUri": "s3://lake/offline/rides/driver-trip-stats/v2",
    "lastMaterializedWindow": {"start": "2026-03-01T10:00:00Z", "end": "2026-03-01T11:00:00Z"},
    "servingVersions": [2],
    "progress": [
        {
            "version": 2,
            "materializedUntil": "2026-03-01T11:00:00Z",
            "windows": [
                {
                    "start": "2026-03-01T10:00:00Z",
                    "end": "2026-03-01T11:00:00Z",
                    "state": "Succeeded",
                    "finishedAt": "2026-03-01T11:04:00Z",
                    "rows": {"read": 10, "offline": 9, "online": 3},
                    "engine": "python",
                }
            ],
        }
    ],
    "retiredVersions": [{"version": 1, "since": "2026-02-20T00:00:00Z"}],
    "expectations": [
        {
            "feature": "avg_trip_speed_kmh_30m",
            "check": "max",
            "onViolation": "Warn",
            "rows": 3,
            "message": "3 rows above 200",
            "windowStart": "2026-03-01T10:00:00Z",
        },
        {
            "feature": "trips_1d",
            "check": "min",
            "onViolation": "Fail",
            "rows": 0,
            "windowStart": "2026-03-01T10:00:00Z",
        },
    ],
    "freshness": {"objective": "20m", "met": False, "since": "2026-03-01T11:20:00Z"},
    "drift": [
        {
            "feature": "avg_trip_speed_kmh_7d",
            "psi": 0.31,
            "drifted": True,
            "windowStart": "2026-03-01T10:00:00Z",
        }
    ],
}


def eta_model(**spec: Any) -> v1alpha1.FeatureService:
    body = example("eta-model")
    body["spec"].update(spec)
    return v1alpha1.FeatureService.model_validate(body)


def catalog(*views: v1alpha1.FeatureView) -> model.Catalog:
    return model.build_catalog(
        views or [trip_stats(**STATUS)],
        [eta_model(access={"read": ["pricing/quote-api"]})],
        ["rides"],
    )


class Parsed(html.parser.HTMLParser):
    """The tags and text of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_a_view_page_shows_features_versions_expectations_drift_and_freshness() -> None:
    page = model.build_view_page(catalog(), ("rides", "driver-trip-stats"), model.Statistics(), NOW)
    assert page is not None

    assert [f.name for f in page.features][:2] == ["trips_30m", "trips_1d"]
    assert page.features[0].origin == "count(trip_id) over 30m"
    assert [(v.version, v.state) for v in page.versions] == [(2, "serving"), (1, "retired")]
    verdicts = {(x.feature, x.check): x.verdict for x in page.expectations}
    assert verdicts == {("trips_1d", "min"): "pass", ("avg_trip_speed_kmh_30m", "max"): "warn"}
    assert page.drift == (("avg_trip_speed_kmh_7d", 0.31, True, STATUS_WINDOW),)
    assert dict(page.freshness)["state"] == "stale"
    assert dict(page.freshness)["behind now"] == "1h 0m"
    assert page.consumers == ((("rides", "eta-model"), ("pricing/quote-api",)),)
    assert page.windows[0].rows == 9


STATUS_WINDOW = dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC)


def test_expectations_not_checked_yet_say_so() -> None:
    page = model.build_view_page(
        catalog(trip_stats()), ("rides", "driver-trip-stats"), model.Statistics(), NOW
    )
    assert page is not None
    assert {x.verdict for x in page.expectations} == {"not checked yet"}
    assert dict(page.freshness)["state"] == "not measured yet"


def test_the_view_page_renders_warn_drift_and_the_affected_services() -> None:
    page = model.build_view_page(catalog(), ("rides", "driver-trip-stats"), model.Statistics(), NOW)
    assert page is not None

    text = pages.render_view(page)

    assert '<span class="badge warn">warn</span>' in text
    assert '<span class="badge drifted">drifted</span>' in text
    assert "no statistics yet" in text
    assert 'href="/services/rides/eta-model"' in text
    assert "read by pricing/quote-api" in text
    assert "WHERE status = &#x27;completed&#x27;" in text


def test_a_hostile_description_and_tag_are_shown_not_run() -> None:
    body = example("driver-trip-stats")
    body["spec"]["description"] = HOSTILE
    body["spec"]["tags"] = {"team": HOSTILE[:200]}
    view = v1alpha1.FeatureView.model_validate(body)
    built = catalog(view)
    page = model.build_view_page(built, ("rides", "driver-trip-stats"), model.Statistics(), NOW)
    assert page is not None
    index = search.Index(built.entries)

    for text in (
        pages.render_view(page),
        pages.render_search(index.search(search.parse_query("")), index.facets, built),
    ):
        parsed = Parsed(text)
        assert not [t for t, _ in parsed.tags if t in ("script", "img")]
        assert not [a for _, attrs in parsed.tags for a in attrs if a.startswith("on")]
        assert HOSTILE in "".join(parsed.text)


def test_a_service_page_shows_features_transformations_servers_figures_and_parity() -> None:
    service = eta_model()
    body = service.model_dump(mode="json", by_alias=True, exclude_none=True)
    body["status"] = {
        "resolvedFeatures": [
            {"name": "trips_1d", "type": "int64", "featureView": "driver-trip-stats"},
            {"name": "quote_hour", "type": "int64"},
        ],
        "servedVersions": [
            {"featureView": "driver-trip-stats", "namespace": "rides", "version": 2}
        ],
        "parity": {
            "checkedAt": "2026-03-01T11:00:00Z",
            "entities": 100,
            "values": 1000,
            "mismatches": 2,
            "mismatchRate": 0.002,
            "examples": [
                {"feature": "trips_1d", "entity": '{"driver_id": 7}', "online": "3", "offline": "4"}
            ],
        },
    }
    built = model.build_catalog(
        [trip_stats(**STATUS)], [v1alpha1.FeatureService.model_validate(body)], ["rides"]
    )
    health = model.ServerHealth(
        desired=2, ready=1, available=1, pods=(model.PodHealth("eta-model-1", "Running", True, 0),)
    )
    figures = model.ServingFigures(unavailable="no running feature server pod")
    page = model.build_service_page(built, ("rides", "eta-model"), health, figures)
    assert page is not None

    text = pages.render_service(page)

    assert page.features[0] == ("trips_1d", "int64", "rides/driver-trip-stats", "2")
    assert page.features[1][2] == "request time"
    assert "unavailable: no running feature server pod" in text
    assert "0.20%" in text and '<span class="badge fail">mismatch</span>' in text
    assert "eta-model-1" in text
    assert page.readers == ("rides/*",)


def test_lineage_draws_source_view_services_and_readers_as_svg() -> None:
    page = model.build_view_page(catalog(), ("rides", "driver-trip-stats"), model.Statistics(), NOW)
    assert page is not None

    svg = lineage.view_lineage(page)

    kinds = re.findall(r'data-kind="(\w+)"', svg)
    assert kinds == ["source", "view", "service", "reader"]
    assert svg.count("<line ") == 3
    assert "s3://featurekube-demo/raw/trips/" in svg


def test_lineage_bounds_a_column_and_escapes_labels() -> None:
    nodes = [lineage.Node(f"n{i}", f"<b>{i}</b>", "service") for i in range(30)]

    svg = lineage.render_svg([nodes], [], title="t")

    assert f"+{30 - lineage.MAX_NODES_PER_COLUMN} more" in svg
    assert "<b>" not in svg and "&lt;b&gt;0&lt;/b&gt;" in svg


SCRAPE = """
# HELP featurekube_server_request_seconds Time to answer a request.
featurekube_server_request_seconds_bucket{feature_service="eta-model",le="0.001"} 90.0
featurekube_server_request_seconds_bucket{feature_service="eta-model",le="0.01"} 99.0
featurekube_server_request_seconds_bucket{feature_service="eta-model",le="+Inf"} 100.0
featurekube_server_request_seconds_count{code="OK",feature_service="eta-model"} 100.0
featurekube_server_request_seconds_count{code="OK",feature_service="other",method="Get"} 7.0
featurekube_server_errors_total{code="INTERNAL",feature_service="eta-model",method="Get"} 2.0
"""


def test_figures_from_two_scrapes_give_rate_errors_and_quantiles() -> None:
    first = metrics.parse_exposition(SCRAPE, "eta-model")
    later = first + first  # two pods, or twice the traffic

    once = metrics.figures_between(first, 0, None, "pods")
    rate = metrics.figures_between(later, 10.0, first, "pods")

    assert (first.requests, first.errors) == (100.0, 2.0)
    assert once.requests_per_second is None and once.p50_seconds is not None
    assert rate.requests_per_second == pytest.approx(10.0)
    assert rate.error_ratio == pytest.approx(0.02)
    assert rate.p50_seconds == pytest.approx(0.5 / 90 * 0.001 * 100, rel=1e-6)
    assert rate.p99_seconds == pytest.approx(0.01)


def test_histogram_quantile_is_prometheus_estimate() -> None:
    buckets = [(0.1, 0.0), (0.2, 10.0), (math.inf, 10.0)]
    assert metrics.histogram_quantile(0.5, buckets) == pytest.approx(0.15)
    assert metrics.histogram_quantile(0.5, []) is None


def test_prometheus_queries_quote_names() -> None:
    queries = metrics.prometheus_queries("rides", 'a"b')
    assert 'feature_service="a\\"b"' in queries["requests_per_second"]


def test_statistics_keep_the_latest_write_of_the_latest_windows() -> None:
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    record = {
        "window_start": start, "window_end": start, "feature": "trips_1d", "type": "int64",
        "count": 10, "nulls": 0, "min": 0.0, "max": 9.0, "mean": 4.5, "stddev": 3.0,
        "quantiles": [float(i) for i in range(21)],
        "top_values": [{"value": "a", "count": 3}], "psi": 0.1, "written_at": start,
    }  # fmt: skip
    rewritten = {**record, "count": 11, "written_at": start + dt.timedelta(hours=1)}
    records = [{**record, "window_start": start + dt.timedelta(hours=h)} for h in range(1, 5)] + [
        record,
        rewritten,
    ]

    rows = statistics.rows_from_records(records, max_windows=4)

    assert [r.window_start.hour for r in rows] == [1, 2, 3, 4]
    everything = statistics.rows_from_records(records, max_windows=10)
    assert everything[0].count == 11 and everything[0].top_values == (("a", 3),)


def test_statistics_render_with_a_line_over_time() -> None:
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    rows = tuple(
        model.StatisticsRow(start + dt.timedelta(hours=h), start, "trips_1d", "int64", 10, 0,
                            0.0, 9.0, float(h), 1.0, 4.0, (), 0.05)
        for h in range(3)
    )  # fmt: skip
    page = model.build_view_page(
        catalog(), ("rides", "driver-trip-stats"), model.Statistics(rows), NOW
    )
    assert page is not None

    text = pages.render_view(page)

    assert '<table class="statistics">' in text and "<polyline" in text


@pytest.mark.parametrize("module", [lineage, metrics, statistics])
def test_docstring_examples(module: Any) -> None:
    assert doctest.testmod(module).failed == 0


def test_a_view_missing_from_the_catalog_has_no_page() -> None:
    built = catalog()
    assert model.build_view_page(built, ("rides", "nope"), model.Statistics(), NOW) is None
    assert (
        model.build_service_page(built, ("x", "y"), model.ServerHealth(), model.ServingFigures())
        is None
    )
