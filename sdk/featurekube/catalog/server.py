"""The catalog's web server: HTML pages and a JSON API beside them; does I/O.

A thin aiohttp application over :class:`~featurekube.catalog.cluster.Source`: each
handler reads what it needs (the cached listing; for a view its statistics, for a
service its pods and their metrics), calls the pure builders, and renders. Read-only
and GET only (HEAD too, as HTTP requires): any other method is 405. Every answer
carries a strict Content-Security-Policy (no script at all, styles from the catalog
only); query strings longer than :data:`MAX_QUERY_STRING` are refused with 414.

    GET /                               search (q, namespace, entity, owner, tag, kind, page)
    GET /views/{namespace}/{name}       a FeatureView's page
    GET /services/{namespace}/{name}    a FeatureService's page
    GET /api/search                     the same search as JSON
    GET /api/views/{namespace}/{name}   a view's page data as JSON
    GET /api/services/{namespace}/{name}
    GET /healthz                        200 once the cluster has been listed
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from featurekube import errors
from featurekube.catalog import cluster, metrics, model, pages, search, statistics

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "MAX_QUERY_STRING",
    "CatalogSettings",
    "create_app",
]

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
"""No script, no plugin, no frame; styles and images from the catalog only."""
MAX_QUERY_STRING = 1024
"""The longest query string (bytes) the catalog reads."""
MAX_METRICS_BYTES = 4 * 1024 * 1024
"""The most read from one server's /metrics or one Prometheus answer."""
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@dataclasses.dataclass(frozen=True)
class CatalogSettings:
    """How the catalog reads what is not in the API server's objects."""

    prometheus_url: str | None = None
    """A Prometheus server to ask for request rate and latency; None: the servers'
    own /metrics."""
    metrics_timeout: float = 2.0
    """Seconds to wait for a server's /metrics or a Prometheus answer."""
    statistics_ttl: float = 30.0
    """Seconds a view version's statistics are kept before they are read again."""
    storage_options: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """delta-rs storage options for reading statistics tables."""


@dataclasses.dataclass
class _State:
    source: cluster.Source
    samples: dict[model.Key, tuple[float, metrics.Sample]] = dataclasses.field(default_factory=dict)
    statistics: dict[str, tuple[float, model.Statistics]] = dataclasses.field(default_factory=dict)


_SETTINGS = web.AppKey("settings", CatalogSettings)
_STATE = web.AppKey("state", _State)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _guard(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Security headers on every answer; long query strings and errors as pages."""
    try:
        if len(request.query_string) > MAX_QUERY_STRING:
            response: web.StreamResponse = _error(
                request,
                414,
                f"the query string is {len(request.query_string)} bytes long; the catalog "
                f"reads at most {MAX_QUERY_STRING}",
            )
        else:
            response = await handler(request)
    except errors.CatalogQueryError as exc:
        response = _error(request, 400, str(exc))
    except errors.ClusterError as exc:
        response = _error(request, 503, exc.summary)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _error(request, exc.status, exc.reason)
    response.headers.update(_SECURITY_HEADERS)
    return response


def _error(request: web.Request, status: int, message: str) -> web.Response:
    if request.path.startswith("/api/"):
        return web.json_response({"error": message, "status": status}, status=status)
    return web.Response(
        text=pages.render_error(status, message), status=status, content_type="text/html"
    )


def create_app(source: cluster.Source, settings: CatalogSettings | None = None) -> web.Application:
    """The catalog application over ``source``."""
    app = web.Application(middlewares=[_guard], client_max_size=1024)
    app[_SETTINGS] = settings or CatalogSettings()
    app[_STATE] = _State(source)
    app.router.add_get("/", _search_page)
    app.router.add_get("/views/{namespace}/{name}", _view_page)
    app.router.add_get("/services/{namespace}/{name}", _service_page)
    app.router.add_get("/api/search", _search_json)
    app.router.add_get("/api/views/{namespace}/{name}", _view_json)
    app.router.add_get("/api/services/{namespace}/{name}", _service_json)
    app.router.add_get("/static/catalog.css", _stylesheet)
    app.router.add_get("/healthz", _healthz)
    return app


async def _listing(request: web.Request) -> cluster.Listing:
    return await asyncio.get_running_loop().run_in_executor(
        None, request.app[_STATE].source.listing
    )


def _query(request: web.Request) -> search.Query:
    params = request.query
    page_text = params.get("page", "1")
    if not page_text.isdigit() or len(page_text) > 6:
        raise errors.CatalogQueryError(f"page {page_text!r} is not a page number")
    return search.parse_query(
        params.get("q", ""),
        page=int(page_text),
        **{name: params.get(name, "") for name in search.FILTERS},
    )


async def _search_page(request: web.Request) -> web.Response:
    query = _query(request)
    listing = await _listing(request)
    results = listing.index.search(query)
    html = pages.render_search(results, listing.index.facets, listing.catalog)
    return web.Response(text=html, content_type="text/html")


async def _search_json(request: web.Request) -> web.Response:
    query = _query(request)
    listing = await _listing(request)
    results = listing.index.search(query)
    return web.json_response(
        {
            "query": query.text,
            "total": results.total,
            "page": results.page,
            "pages": results.pages,
            "hits": [dataclasses.asdict(hit) for hit in results.hits],
            "facets": pages.render_facets(listing.index.facets),
            "namespaces": list(listing.catalog.namespaces),
            "skipped": list(listing.catalog.skipped),
        },
        dumps=_dumps,
    )


def _key(request: web.Request) -> model.Key:
    namespace = request.match_info["namespace"]
    name = request.match_info["name"]
    if len(namespace) > 63 or not _NAME.match(namespace) or not _NAME.match(name):
        raise web.HTTPNotFound(reason=f"{namespace}/{name} is not a Kubernetes object name")
    return namespace, name


async def _view(request: web.Request) -> model.ViewPage:
    key = _key(request)
    listing = await _listing(request)
    view = listing.catalog.views.get(key)
    if view is None:
        raise web.HTTPNotFound(reason=f"no FeatureView {key[0]}/{key[1]} that you may list")
    stats = await _statistics(request, view)
    page = model.build_view_page(listing.catalog, key, stats, dt.datetime.now(dt.UTC))
    assert page is not None  # the view is in the catalog
    return page


async def _statistics(request: web.Request, view: Any) -> model.Statistics:
    state = request.app[_STATE]
    settings = request.app[_SETTINGS]
    uri = (view.status.offline_uri if view.status else None) or ""
    kept = state.statistics.get(uri)
    if kept is not None and time.monotonic() - kept[0] < settings.statistics_ttl:
        return kept[1]
    found: model.Statistics = await asyncio.get_running_loop().run_in_executor(
        None, statistics.read, view, settings.storage_options
    )
    if len(state.statistics) > 1024:
        state.statistics.clear()
    state.statistics[uri] = (time.monotonic(), found)
    return found


async def _view_page(request: web.Request) -> web.Response:
    page = await _view(request)
    return web.Response(text=pages.render_view(page), content_type="text/html")


async def _view_json(request: web.Request) -> web.Response:
    page = await _view(request)
    return web.json_response(
        {
            "featureView": page.view.model_dump(mode="json", by_alias=True, exclude_none=True),
            "features": [dataclasses.asdict(f) for f in page.features],
            "versions": [dataclasses.asdict(v) for v in page.versions],
            "expectations": [dataclasses.asdict(x) for x in page.expectations],
            "freshness": dict(page.freshness),
            "statistics": dataclasses.asdict(page.statistics),
            "usedBy": [
                {"namespace": k[0], "name": k[1], "readers": list(r)} for k, r in page.consumers
            ],
        },
        dumps=_dumps,
    )


async def _service(request: web.Request) -> model.ServicePage:
    key = _key(request)
    listing = await _listing(request)
    if key not in listing.catalog.services:
        raise web.HTTPNotFound(reason=f"no FeatureService {key[0]}/{key[1]} that you may list")
    state = request.app[_STATE]
    health, urls = await asyncio.get_running_loop().run_in_executor(
        None, state.source.health, key[0], key[1]
    )
    figures = await _figures(request, key, urls)
    page = model.build_service_page(listing.catalog, key, health, figures)
    assert page is not None  # the service is in the catalog
    return page


async def _service_page(request: web.Request) -> web.Response:
    page = await _service(request)
    return web.Response(text=pages.render_service(page), content_type="text/html")


async def _service_json(request: web.Request) -> web.Response:
    page = await _service(request)
    return web.json_response(
        {
            "featureService": page.service.model_dump(
                mode="json", by_alias=True, exclude_none=True
            ),
            "features": [
                {"name": n, "type": t, "from": f, "version": v} for n, t, f, v in page.features
            ],
            "servers": dataclasses.asdict(page.health),
            "requests": dataclasses.asdict(page.figures),
            "readers": list(page.readers),
        },
        dumps=_dumps,
    )


async def _fetch(session: aiohttp.ClientSession, url: str) -> bytes:
    async with session.get(url) as response:
        response.raise_for_status()
        body = await response.content.read(MAX_METRICS_BYTES + 1)
    if len(body) > MAX_METRICS_BYTES:
        raise ValueError(f"{url} answered more than {MAX_METRICS_BYTES} bytes")
    return body


async def _figures(request: web.Request, key: model.Key, urls: list[str]) -> model.ServingFigures:
    settings = request.app[_SETTINGS]
    timeout = aiohttp.ClientTimeout(total=settings.metrics_timeout)
    if settings.prometheus_url:
        return await _from_prometheus(settings.prometheus_url, key, timeout)
    if not urls:
        return model.ServingFigures(
            unavailable="no running feature server pod to read /metrics from, and no "
            "--prometheus given"
        )
    async with aiohttp.ClientSession(timeout=timeout) as session:
        answers = await asyncio.gather(*(_fetch(session, u) for u in urls), return_exceptions=True)
    texts = [a.decode("utf-8", "replace") for a in answers if isinstance(a, bytes)]
    if not texts:
        first = next(a for a in answers if isinstance(a, BaseException))
        return model.ServingFigures(
            unavailable=f"the feature servers' /metrics did not answer ({first!r}), and no "
            "--prometheus given"
        )
    sample = metrics.Sample()
    for text in texts:
        sample = sample + metrics.parse_exposition(text, key[1])
    state = request.app[_STATE]
    now = time.monotonic()
    before = state.samples.get(key)
    if len(state.samples) > 4096:
        state.samples.clear()
    # Keep the older sample until a rate over a few seconds can be taken.
    if before is None or now - before[0] >= 5 or sample.requests < before[1].requests:
        state.samples[key] = (now, sample)
    source = f"/metrics of {len(texts)} of {len(urls)} pod(s)"
    if before is None:
        return metrics.figures_between(sample, 0, None, source)
    return metrics.figures_between(sample, now - before[0], before[1], source)


async def _from_prometheus(
    url: str, key: model.Key, timeout: aiohttp.ClientTimeout
) -> model.ServingFigures:
    found: dict[str, float | None] = {}
    endpoint = url.rstrip("/") + "/api/v1/query"
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for name, promql in metrics.prometheus_queries(*key).items():
                body = await _fetch(
                    session, f"{endpoint}?{urllib.parse.urlencode({'query': promql})}"
                )
                found[name] = metrics.parse_query_result(_loads(body))
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return model.ServingFigures(unavailable=f"Prometheus at {url} did not answer: {exc!r}")
    return model.ServingFigures(
        source=f"Prometheus at {url}",
        requests_per_second=found["requests_per_second"],
        error_ratio=found["error_ratio"],
        p50_seconds=found["p50_seconds"],
        p99_seconds=found["p99_seconds"],
    )


async def _stylesheet(request: web.Request) -> web.Response:
    return web.Response(text=pages.STYLESHEET, content_type="text/css")


async def _healthz(request: web.Request) -> web.Response:
    listing = await _listing(request)
    return web.json_response(
        {"objects": len(listing.catalog.entries), "listingSeconds": round(listing.seconds, 4)}
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_jsonable)


def _jsonable(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"{type(value).__name__} is not JSON")


def _loads(body: bytes) -> Any:
    return json.loads(body)
