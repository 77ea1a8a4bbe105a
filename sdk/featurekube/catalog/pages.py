"""The catalog's HTML pages; pure.

Each function takes page data from :mod:`~featurekube.catalog.model` and
:mod:`~featurekube.catalog.search` and returns a whole document. Every string that
comes from a user (names, descriptions, SQL, tags, messages) goes through
:func:`html.escape`, so a description holding ``<script>`` is shown, never run; the
pages need no script and no inline style (the server's Content-Security-Policy
forbids both).
"""

from __future__ import annotations

import datetime as dt
import html
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence

from featurekube.catalog import lineage, model, search

__all__ = [
    "STYLESHEET",
    "render_error",
    "render_search",
    "render_service",
    "render_view",
]

MAX_WINDOWS_SHOWN = 60
"""Windows listed on a view's page, newest first."""
MAX_STATISTICS_WINDOWS = 48
"""Windows of statistics drawn over time per feature."""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _time(moment: dt.datetime | None) -> str:
    if moment is None:
        return "-"
    utc = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%d %H:%M:%SZ")


def _number(value: float | int | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.3g} ms"


def _layout(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} \u00b7 featurekube catalog</title>"
        '<link rel="stylesheet" href="/static/catalog.css"></head><body>'
        '<header><a class="brand" href="/">featurekube catalog</a>'
        '<form class="search" action="/" method="get" role="search">'
        '<input type="search" name="q" aria-label="search" '
        f'maxlength="{search.MAX_QUERY_LENGTH}" placeholder="name, entity, owner, tag, words">'
        "<button>Search</button></form></header>"
        f"<main>{body}</main></body></html>\n"
    )


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], css: str = "") -> str:
    """A table of already-escaped cells."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    klass = f' class="{css}"' if css else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pairs(pairs: Iterable[tuple[str, str]]) -> str:
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in pairs)
    return f"<dl>{items}</dl>"


def _badge(text: str, kind: str = "") -> str:
    return f'<span class="badge {_e(kind or text.lower())}">{_e(text)}</span>'


def _ready_badge(ready: str) -> str:
    shown = {"True": "ready", "False": "not ready", "Unknown": "unknown"}.get(ready, "pending")
    return _badge(shown, shown.replace(" ", "-"))


def _tags(tags: Iterable[tuple[str, str]]) -> str:
    return " ".join(
        f'<a class="tag" href="/?tag={urllib.parse.quote(f"{k}={v}")}">{_e(k)}={_e(v)}</a>'
        for k, v in tags
    )


def _search_link(label: str, **params: str) -> str:
    return f'<a href="/?{urllib.parse.urlencode(params)}">{_e(label)}</a>'


def _select(name: str, values: Sequence[tuple[str, int]], chosen: str) -> str:
    options = ['<option value="">any</option>']
    for value, count in values[:500]:
        selected = " selected" if value.lower() == chosen else ""
        options.append(f'<option value="{_e(value)}"{selected}>{_e(value)} ({count})</option>')
    return (
        f'<label>{_e(name)} <select name="{_e(name)}" aria-label="{_e(name)}">'
        + "".join(options)
        + "</select></label>"
    )


def render_search(results: search.Results, facets: search.Facets, catalog: model.Catalog) -> str:
    """The search page: the box and its filters, one page of hits, and what was skipped."""
    query = results.query
    words = " ".join(query.words)
    form = (
        '<form class="filters" action="/" method="get">'
        f'<input type="search" name="q" id="q" aria-label="search words" value="{_e(words)}" '
        f'maxlength="{search.MAX_QUERY_LENGTH}" placeholder="name, entity, owner, tag, words">'
        + _select("namespace", facets.namespaces, query.namespace)
        + _select("entity", facets.entities, query.entity)
        + _select("owner", facets.owners, query.owner)
        + _select("tag", facets.tags, query.tag)
        + '<label>kind <select name="kind" aria-label="kind">'
        + "".join(
            f'<option value="{k}"{" selected" if query.kind == k else ""}>{label}</option>'
            for k, label in (("", "any"), ("view", "views"), ("service", "services"))
        )
        + "</select></label><button>Search</button></form>"
    )
    rows = []
    for entry in results.hits:
        key = (entry.namespace, entry.name)
        href = lineage.view_href(key) if entry.kind == "FeatureView" else lineage.service_href(key)
        kind = "view" if entry.kind == "FeatureView" else "service"
        rows.append(
            (
                _badge(kind),
                f'<a class="hit" href="{_e(href)}">{_e(entry.name)}</a>',
                _search_link(entry.namespace, namespace=entry.namespace),
                " ".join(_search_link(x, entity=x) for x in entry.entities),
                _search_link(entry.owner, owner=entry.owner),
                _tags(entry.tags),
                _e(entry.description[:200]),
                _ready_badge(entry.ready),
            )
        )
    summary = (
        f'<p class="summary" id="summary">{results.total} found '
        f"among {len(catalog.entries)} in {len(catalog.namespaces)} namespace(s)"
        + (f" \u00b7 page {results.page} of {results.pages}" if results.pages > 1 else "")
        + "</p>"
    )
    table = _table(
        ("kind", "name", "namespace", "entities", "owner", "tags", "description", "state"),
        rows,
        "results",
    )
    pager = _pager(results)
    skipped = ""
    if catalog.skipped:
        skipped = (
            '<details class="skipped"><summary>not shown</summary><ul>'
            + "".join(f"<li>{_e(s)}</li>" for s in catalog.skipped)
            + "</ul></details>"
        )
    return _layout("search", f"<h1>Features</h1>{form}{summary}{table}{pager}{skipped}")


def _pager(results: search.Results) -> str:
    if results.pages <= 1:
        return ""
    query = results.query
    params = {
        name: value
        for name, value in (
            ("q", " ".join(query.words)),
            *((f, getattr(query, f)) for f in search.FILTERS),
        )
        if value
    }
    links = []
    if results.page > 1:
        links.append(_search_link("previous", **params, page=str(results.page - 1)))
    if results.page < results.pages:
        links.append(_search_link("next", **params, page=str(results.page + 1)))
    return f'<nav class="pager">{" ".join(links)}</nav>'


def _conditions(conditions: Sequence[object] | None) -> str:
    rows = [
        (
            _e(getattr(c, "type", "")),
            _badge(str(getattr(c, "status", "")), str(getattr(c, "status", "")).lower()),
            _e(getattr(c, "reason", "")),
            _e(getattr(c, "message", "")),
            _e(_time(getattr(c, "last_transition_time", None))),
        )
        for c in conditions or ()
    ]
    if not rows:
        return "<p>No conditions yet: the operator has not reported on it.</p>"
    return _table(("condition", "status", "reason", "message", "since"), rows, "conditions")


def _sparkline(values: Sequence[float | None]) -> str:
    points = [(i, v) for i, v in enumerate(values) if v is not None and v == v]
    if len(points) < 2:
        return ""
    low = min(v for _, v in points)
    high = max(v for _, v in points)
    span = (high - low) or 1.0
    width, height = 120, 24
    step = width / max(len(values) - 1, 1)
    path = " ".join(f"{i * step:.1f},{height - (v - low) / span * height:.1f}" for i, v in points)
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img"><title>mean over {len(values)} windows</title>'
        f'<polyline points="{path}"/></svg>'
    )


def _statistics(stats: model.Statistics) -> str:
    if not stats.rows:
        return f'<p class="no-statistics">{_e(stats.missing or "no statistics yet")}</p>'
    latest: dict[str, model.StatisticsRow] = {}
    history: dict[str, list[float | None]] = {}
    for row in stats.rows:
        latest[row.feature] = row
        history.setdefault(row.feature, []).append(row.mean)
    rows = []
    for feature, row in sorted(latest.items()):
        top = ", ".join(f"{_e(v)} ({c})" for v, c in row.top_values[:5])
        rows.append(
            (
                _e(feature),
                _e(_time(row.window_start)),
                _number(row.count),
                _number(row.nulls),
                _number(row.min),
                _number(row.max),
                _number(row.mean),
                _number(row.stddev),
                _number(row.median),
                top,
                _number(row.psi),
                _sparkline(history[feature][-MAX_STATISTICS_WINDOWS:]),
            )
        )
    headers = (
        "feature", "window", "count", "nulls", "min", "max", "mean", "stddev", "median",
        "top values", "psi", "mean over time",
    )  # fmt: skip
    return _table(headers, rows, "statistics")


def render_view(page: model.ViewPage) -> str:
    """A FeatureView's page."""
    view = page.view
    spec = view.spec
    status = view.status
    namespace, name = page.key
    head = (
        f'<h1><span class="kind">FeatureView</span> {_e(namespace)}/<span id="name">'
        f"{_e(name)}</span> {_ready_badge(_ready(status))}</h1>"
        f'<p class="description" id="description">{_e(spec.description or "")}</p>'
        + _pairs(
            [
                ("owner", spec.owner),
                ("ttl", spec.ttl or "none"),
                ("version", str(status.version) if status and status.version else "-"),
                ("offline table", (status.offline_uri if status else None) or "-"),
                ("online table", (status.online_table if status else None) or "-"),
            ]
        )
        + f'<p class="tags">{_tags(sorted((spec.tags or {}).items()))}</p>'
    )
    entities = _table(
        ("entity", "type", "description"),
        ((_e(x.name), _e(x.type), _e(x.description or "")) for x in spec.entities),
        "entities",
    )
    drift = {feature: (psi, drifted) for feature, psi, drifted, _ in page.drift}
    features = _table(
        ("feature", "type", "computed as", "description", "drift (psi)"),
        (
            (
                _e(f.name),
                _e(f.type),
                _e(f.origin),
                _e(f.description),
                _drift_cell(drift.get(f.name)),
            )
            for f in page.features
        ),
        "features",
    )
    transformation = (
        f'<pre class="sql" id="sql">{_e(spec.transformation.sql)}</pre>'
        if spec.transformation
        else "<p>None: features are the source's columns.</p>"
    )
    versions = _table(
        ("version", "state", "materialized until", "retired since"),
        (
            (str(v.version), _badge(v.state), _e(_time(v.materialized_until)), _e(_time(v.since)))
            for v in page.versions
        ),
        "versions",
    )
    windows = _table(
        ("version", "window start", "end", "state", "attempt", "offline rows", "engine",
         "finished", "ready after end", "reason"),
        (
            (
                str(w.version),
                _e(_time(w.start)),
                _e(_time(w.end)),
                _badge(w.state),
                str(w.attempt),
                _number(w.rows),
                _e(w.engine),
                _e(_time(w.finished_at)),
                _e(_lag(w.finished_at, w.end)),
                _e(w.reason),
            )
            for w in page.windows[:MAX_WINDOWS_SHOWN]
        ),
        "windows",
    )  # fmt: skip
    expectations = (
        _table(
            ("feature", "check", "expected", "on violation", "result", "rows", "window", "message"),
            (
                (
                    _e(x.feature),
                    _e(x.check),
                    _e(x.expected),
                    _e(x.on_violation),
                    _badge(x.verdict, x.verdict.replace(" ", "-")),
                    _number(x.rows),
                    _e(_time(x.window_start)),
                    _e(x.message),
                )
                for x in page.expectations
            ),
            "expectations",
        )
        if page.expectations
        else "<p>No expectations declared.</p>"
    )
    threshold = (
        f"<p>Drift: PSI against the reference, drifted above {page.drift_threshold:g}.</p>"
        if page.drift_threshold is not None
        else "<p>Drift is not measured: spec.monitoring.drift is not set.</p>"
    )
    affected = _affected(page)
    body = (
        head
        + f'<section id="lineage"><h2>Lineage</h2>{lineage.view_lineage(page)}</section>'
        + f'<section id="affected"><h2>What a change would affect</h2>{affected}</section>'
        + f"<section><h2>Entities</h2>{entities}</section>"
        + f'<section id="features"><h2>Features</h2>{features}</section>'
        + f"<section><h2>Source</h2>{_pairs(page.source)}</section>"
        + f"<section><h2>Transformation</h2>{transformation}</section>"
        + f'<section id="freshness"><h2>Freshness</h2>{_pairs(page.freshness)}</section>'
        + f'<section id="expectations"><h2>Expectations</h2>{expectations}</section>'
        + f'<section id="statistics"><h2>Statistics and drift</h2>{threshold}'
        + f"{_statistics(page.statistics)}</section>"
        + f'<section id="versions"><h2>Versions</h2>{versions}</section>'
        + f'<section id="windows"><h2>Windows</h2>{windows}</section>'
        + f"<section><h2>Conditions</h2>{_conditions(status.conditions if status else None)}"
        + "</section>"
    )
    return _layout(f"{namespace}/{name}", body)


def _ready(status: object | None) -> str:
    for condition in getattr(status, "conditions", None) or ():
        if condition.type == "Ready":
            return str(condition.status)
    return ""


def _lag(finished: dt.datetime | None, end: dt.datetime) -> str:
    if finished is None:
        return "-"
    seconds = int((finished - end).total_seconds())
    if seconds < 0:
        return "-"
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h {rest // 60}m" if hours else f"{rest // 60}m {rest % 60}s"


def _drift_cell(found: tuple[float, bool] | None) -> str:
    if found is None:
        return "-"
    psi, drifted = found
    return f"{psi:.3f} " + (_badge("drifted") if drifted else _badge("stable"))


def _affected(page: model.ViewPage) -> str:
    if not page.consumers:
        return "<p>No FeatureService uses this view: a change affects only its own tables.</p>"
    items = []
    for key, readers in page.consumers:
        href = lineage.service_href(key)
        who = ", ".join(_e(r) for r in readers)
        items.append(f'<li><a href="{_e(href)}">{_e(key[0])}/{_e(key[1])}</a>, read by {who}</li>')
    return f'<ul class="affected">{"".join(items)}</ul>'


def render_service(page: model.ServicePage) -> str:
    """A FeatureService's page."""
    service = page.service
    spec = service.spec
    status = service.status
    namespace, name = page.key
    parity = status.parity if status else None
    head = (
        f'<h1><span class="kind">FeatureService</span> {_e(namespace)}/<span id="name">'
        f"{_e(name)}</span> {_ready_badge(_ready(status))}</h1>"
        f'<p class="description">{_e(spec.description or "")}</p>'
        + _pairs(
            [
                ("owner", spec.owner),
                ("endpoint", (status.endpoint if status else None) or "-"),
                ("readers", ", ".join(page.readers)),
            ]
        )
        + f'<p class="tags">{_tags(sorted((spec.tags or {}).items()))}</p>'
    )
    features = _table(
        ("feature", "type", "from", "version"),
        (
            (
                _e(feature),
                _e(kind),
                _view_link(origin),
                _e(version),
            )
            for feature, kind, origin, version in page.features
        ),
        "features",
    )
    transformations = (
        _table(
            ("name", "type", "expression", "description"),
            (
                (_e(t.name), _e(t.type), f"<code>{_e(t.expression)}</code>", _e(t.description))
                for t in spec.transformations or ()
            ),
            "transformations",
        )
        if spec.transformations
        else "<p>None.</p>"
    )
    request = ", ".join(f"{_e(f.name)} ({_e(f.type)})" for f in spec.request_data or ())
    body = (
        head
        + f'<section id="lineage"><h2>Lineage</h2>{lineage.service_lineage(page)}</section>'
        + f'<section id="features"><h2>Features</h2>{features}</section>'
        + '<section id="transformations"><h2>Request-time transformations</h2>'
        + (f"<p>Request data: {request}</p>" if request else "")
        + f"{transformations}</section>"
        + f'<section id="health"><h2>Servers</h2>{_health(page.health)}</section>'
        + f'<section id="traffic"><h2>Requests</h2>{_figures(page.figures)}</section>'
        + f'<section id="parity"><h2>Parity</h2>{_parity(parity)}</section>'
        + f"<section><h2>Conditions</h2>{_conditions(status.conditions if status else None)}"
        + "</section>"
    )
    return _layout(f"{namespace}/{name}", body)


def _view_link(origin: str) -> str:
    namespace, sep, name = origin.partition("/")
    if not sep:
        return _e(origin)
    return f'<a href="{_e(lineage.view_href((namespace, name)))}">{_e(origin)}</a>'


def _health(health: model.ServerHealth) -> str:
    if health.missing:
        return f'<p class="unavailable">{_e(health.missing)}</p>'
    summary = _pairs(
        [
            ("replicas wanted", _number(health.desired)),
            ("ready", _number(health.ready)),
            ("available", _number(health.available)),
        ]
    )
    pods = _table(
        ("pod", "phase", "ready", "restarts"),
        (
            (_e(p.name), _e(p.phase), _badge("ready" if p.ready else "not ready"), str(p.restarts))
            for p in health.pods
        ),
        "pods",
    )
    return summary + (pods if health.pods else "<p>No pods.</p>")


def _figures(figures: model.ServingFigures) -> str:
    if figures.unavailable:
        return (
            '<p class="unavailable" id="metrics-unavailable">'
            f"unavailable: {_e(figures.unavailable)}</p>"
        )
    rate = (
        f"{figures.requests_per_second:.3g}/s"
        if figures.requests_per_second is not None
        else "measured at the next refresh"
    )
    error = f"{figures.error_ratio:.2%}" if figures.error_ratio is not None else "-"
    pairs: list[tuple[str, str]] = [
        ("request rate", rate),
        ("errors", error),
        ("latency p50", _seconds(figures.p50_seconds)),
        ("latency p99", _seconds(figures.p99_seconds)),
    ]
    if figures.requests_total is not None:
        pairs.append(("requests since start", f"{figures.requests_total:.0f}"))
    pairs.append(("from", figures.source))
    return _pairs(pairs)


def _parity(parity: object | None) -> str:
    if parity is None:
        return "<p>No parity check has run yet.</p>"
    rate = float(getattr(parity, "mismatch_rate", 0.0))
    verdict = (
        _badge("match", "pass")
        if not getattr(parity, "mismatches", 0)
        else _badge("mismatch", "fail")
    )
    pairs = _pairs(
        [
            ("checked at", _time(getattr(parity, "checked_at", None))),
            ("entities", str(getattr(parity, "entities", 0))),
            ("values compared", str(getattr(parity, "values", 0))),
            ("mismatches", str(getattr(parity, "mismatches", 0))),
            ("mismatch rate", f"{rate:.2%}"),
        ]
    )
    examples = getattr(parity, "examples", None) or ()
    table = (
        _table(
            ("feature", "entity", "online", "offline"),
            ((_e(x.feature), _e(x.entity), _e(x.online), _e(x.offline)) for x in examples),
            "mismatches",
        )
        if examples
        else ""
    )
    return f"<p>{verdict}</p>{pairs}{table}"


def render_error(status: int, message: str) -> str:
    """A page saying what went wrong (404, 400)."""
    return _layout(
        f"{status}",
        f'<h1>{status}</h1><p class="error" id="error">{_e(message)}</p>'
        '<p><a href="/">Back to search</a></p>',
    )


def render_facets(facets: search.Facets) -> Mapping[str, object]:
    """The facets as JSON-ready data."""
    return {
        "namespaces": dict(facets.namespaces),
        "entities": dict(facets.entities),
        "owners": dict(facets.owners),
        "tags": dict(facets.tags),
    }


STYLESHEET = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1d232a; background: #fafbfc; }
header { display: flex; gap: 1.5em; align-items: center; padding: .6em 1.2em;
  background: #20344c; }
header a.brand { color: #fff; font-weight: 600; text-decoration: none; }
header form input { width: 24em; }
main { padding: 1em 1.5em; max-width: 1400px; }
h1 { font-size: 1.5em; margin: .3em 0; } h2 { font-size: 1.15em; margin-top: 1.4em; }
h1 .kind { font-size: .6em; color: #5b6b7c; text-transform: uppercase; letter-spacing: .05em; }
table { border-collapse: collapse; margin: .4em 0; background: #fff; }
th, td { border: 1px solid #d8dee4; padding: .25em .55em; text-align: left; vertical-align: top; }
th { background: #eef1f4; font-weight: 600; }
dl { display: grid; grid-template-columns: max-content auto; gap: .15em 1em; margin: .4em 0; }
dt { color: #5b6b7c; } dd { margin: 0; }
pre.sql { background: #f1f3f5; padding: .7em; overflow-x: auto; }
.badge { display: inline-block; padding: 0 .45em; border-radius: .7em; font-size: .85em;
  background: #e3e8ee; }
.badge.ready, .badge.pass, .badge.serving, .badge.succeeded, .badge.stable, .badge.true,
.badge.match { background: #d3f2dc; }
.badge.warn, .badge.materializing, .badge.running, .badge.retired, .badge.unknown,
.badge.pending { background: #fff1c2; }
.badge.fail, .badge.failed, .badge.not-ready, .badge.drifted, .badge.false, .badge.deleted,
.badge.mismatch { background: #fbd5d5; }
a.tag { background: #e8eefc; padding: 0 .4em; border-radius: .3em; text-decoration: none; }
.filters { display: flex; flex-wrap: wrap; gap: .6em; align-items: center; margin: .5em 0; }
.filters input { width: 22em; }
.unavailable, .no-statistics { color: #8a5a00; }
svg.lineage { background: #fff; border: 1px solid #d8dee4; max-width: 100%; height: auto; }
svg.lineage rect { fill: #eef1f4; stroke: #8796a5; }
svg.lineage .view rect { fill: #e2ecfb; } svg.lineage .service rect { fill: #e5f5e9; }
svg.lineage .reader rect { fill: #f6efe3; } svg.lineage .focus rect { stroke: #20344c;
  stroke-width: 2.5; }
svg.lineage text { font: 12px system-ui, sans-serif; fill: #1d232a; }
svg.lineage line.edge { stroke: #8796a5; stroke-width: 1.4; }
svg.spark polyline { fill: none; stroke: #3a6ea5; stroke-width: 1.5; }
.pager a { margin-right: 1em; }
"""
"""The pages' one stylesheet, served from /static/catalog.css."""
