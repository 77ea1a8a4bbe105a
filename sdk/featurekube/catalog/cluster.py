"""What the catalog reads from the Kubernetes API, as the kubeconfig's identity; does I/O.

Read-only: it lists and gets, never writes. :class:`Source` lists every FeatureView
and FeatureService the identity may list, at most once per ``ttl`` seconds however
many pages are asked for, and keeps the search index built from them. A page asked for
while a listing is older than ``ttl`` gets the last one and starts a new listing in the
background; only a listing older than ``max_stale`` is waited for.

Namespaces the identity may not list are skipped and named on the search page: the
catalog lists cluster-wide when allowed, else each namespace it may list (all
namespaces when it may list Namespaces, else those given, else its context's).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import kubernetes.client
import pydantic
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from featurekube import errors
from featurekube.catalog import model, search
from featurekube.planning import cluster as planning_cluster
from featurekube.spec import v1alpha1

__all__ = ["MAX_SCRAPED_PODS", "METRICS_PORT", "RELIST_FACTOR", "Listing", "Source"]

_Resource = v1alpha1.FeatureView | v1alpha1.FeatureService
TIMEOUT = (5.0, 30.0)
"""Seconds to connect to the API server, and to wait for one answer."""
RELIST_FACTOR = 5.0
"""A listing is reused at least this many times as long as it took to read."""
METRICS_PORT = 9090
"""The feature server's metrics port when its pod does not name one."""
MAX_SCRAPED_PODS = 20
"""Pods of one service whose /metrics are read for its page."""
SERVICE_LABEL = "featurekube.dev/feature-service"
"""The label the operator puts on a FeatureService's Deployment and pods."""


@dataclass(frozen=True)
class Listing:
    """One listing of the cluster, indexed for search."""

    catalog: model.Catalog
    index: search.Index
    read_at: float
    """time.monotonic() when it was read."""
    seconds: float
    """How long listing took."""


class Source:
    """The catalog's view of ``cluster``; see the module docstring.

    ``namespaces``: list only these (default: every namespace the identity may list).
    When the identity may list neither cluster-wide nor Namespaces, the context's
    namespace is listed (``default`` when it names none).
    """

    def __init__(
        self,
        cluster: planning_cluster.Cluster,
        *,
        namespaces: Sequence[str] = (),
        ttl: float = 5.0,
        max_stale: float = 60.0,
    ) -> None:
        self.cluster = cluster
        self.api = cluster.api
        self.namespaces = tuple(dict.fromkeys(namespaces))
        self.fallback_namespace = cluster.namespace or "default"
        self.ttl = ttl
        self.max_stale = max_stale
        self._listing: Listing | None = None
        self._lock = threading.Lock()
        self._refreshing = False
        self._parsed: dict[tuple[str, str], tuple[str, _Resource | None]] = {}
        self._fingerprint: object = None

    def listing(self) -> Listing:
        """The current listing: cached, refreshed in the background, or read now."""
        current = self._listing
        now = time.monotonic()
        if current is not None and now - current.read_at < self._reuse(current):
            return current
        if current is not None and now - current.read_at < max(
            self.max_stale, 2 * self._reuse(current)
        ):
            with self._lock:
                start = not self._refreshing
                self._refreshing = True
            if start:
                threading.Thread(target=self._refresh_quietly, daemon=True).start()
            return current
        with self._lock:
            current = self._listing
            if current is not None and time.monotonic() - current.read_at < self._reuse(current):
                return current
            self._listing = self._read()
            return self._listing

    def _reuse(self, listing: Listing) -> float:
        """How long ``listing`` is reused: ``ttl``, or longer when listing is slow, so
        that a big or busy cluster is never listed more than a fifth of the time."""
        return max(self.ttl, RELIST_FACTOR * listing.seconds)

    def _refresh_quietly(self) -> None:
        try:
            listing = self._read()
            with self._lock:
                self._listing = listing
        except errors.FeaturekubeError:
            pass  # The next page past max_stale reads again and shows the error.
        finally:
            with self._lock:
                self._refreshing = False

    def _read(self) -> Listing:
        began = time.monotonic()
        bodies: list[dict[str, Any]] = []
        skipped: list[str] = []
        namespaces: list[str] = []
        listed_cluster_wide = False
        if not self.namespaces:
            try:
                bodies = self._list("FeatureView", None) + self._list("FeatureService", None)
                listed_cluster_wide = True
            except errors.ForbiddenError:
                pass
        if not listed_cluster_wide:
            for namespace in self.namespaces or self._listable_namespaces():
                try:
                    found = self._list("FeatureView", namespace)
                    found += self._list("FeatureService", namespace)
                except errors.ForbiddenError as exc:
                    skipped.append(f"namespace {namespace}: {exc}")
                    continue
                bodies.extend(found)
                namespaces.append(namespace)
        # Parsing through the spec models costs far more than listing: an object whose
        # resourceVersion has not changed since the last listing is not parsed again,
        # and an unchanged cluster keeps its catalog and index.
        known = self._parsed
        parsed: dict[tuple[str, str], tuple[str, _Resource | None]] = {}
        for body in bodies:
            meta = body.get("metadata") or {}
            key = (str(body.get("kind")), str(meta.get("uid") or meta.get("name")))
            version = str(meta.get("resourceVersion") or "")
            kept = known.get(key)
            if kept is not None and kept[1] is not None and version and kept[0] == version:
                parsed[key] = kept
            else:
                parsed[key] = (version, _parse(body, skipped))
        fingerprint = (frozenset((k, v) for k, (v, _) in parsed.items()), tuple(skipped))
        previous = self._listing
        finished = time.monotonic()
        if previous is not None and fingerprint == self._fingerprint:
            return dataclasses.replace(previous, read_at=finished, seconds=finished - began)
        views = [r for _, r in parsed.values() if isinstance(r, v1alpha1.FeatureView)]
        services = [r for _, r in parsed.values() if isinstance(r, v1alpha1.FeatureService)]
        if listed_cluster_wide:
            namespaces = sorted(
                {v.metadata.namespace or "default" for v in views}
                | {s.metadata.namespace or "default" for s in services}
            )
        catalog = model.build_catalog(views, services, namespaces, skipped)
        index = search.Index(catalog.entries)
        self._parsed, self._fingerprint = parsed, fingerprint
        finished = time.monotonic()
        return Listing(catalog, index, finished, finished - began)

    def _listable_namespaces(self) -> list[str]:
        core = kubernetes.client.CoreV1Api(self.api)
        try:
            found = core.list_namespace(_request_timeout=TIMEOUT)
        except ApiException as exc:
            if exc.status in (401, 403):
                return [self.fallback_namespace]
            raise self._error(exc, "namespaces", None) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise planning_cluster.unreachable(self.cluster, exc) from exc
        return sorted(str(item.metadata.name) for item in found.items if item.metadata)

    def _list(self, kind: str, namespace: str | None) -> list[dict[str, Any]]:
        try:
            return planning_cluster.list_objects(self.cluster, kind, namespace)
        except errors.ForbiddenError as exc:
            # Skipped, not an error page: the search page names what the viewer may not list.
            plural = planning_cluster.PLURALS[kind]
            raise errors.ForbiddenError(f"may not list {plural}.{v1alpha1.GROUP}") from exc

    def _error(self, exc: ApiException, what: str, namespace: str | None) -> errors.ClusterError:
        where = f"in namespace {namespace}" if namespace else "in all namespaces"
        return errors.ClusterError(
            f"{self.cluster.server} answered {exc.status} {exc.reason} to listing {what} "
            f"{where}: check the catalog's kubeconfig or ServiceAccount"
        )

    def health(self, namespace: str, service: str) -> tuple[model.ServerHealth, list[str]]:
        """The service's Deployment and pods, and the /metrics URLs of its running pods."""
        apps = kubernetes.client.AppsV1Api(self.api)
        core = kubernetes.client.CoreV1Api(self.api)
        try:
            deployment = apps.read_namespaced_deployment(
                service, namespace, _request_timeout=TIMEOUT
            )
            pods = core.list_namespaced_pod(
                namespace, label_selector=f"{SERVICE_LABEL}={service}", _request_timeout=TIMEOUT
            ).items
        except ApiException as exc:
            if exc.status == 404:
                return model.ServerHealth(
                    missing="no Deployment yet: the operator has not created the feature server"
                ), []
            if exc.status in (401, 403):
                return model.ServerHealth(
                    missing=f"the catalog may not read Deployments and pods in {namespace}"
                ), []
            raise self._error(exc, "deployments", namespace) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise planning_cluster.unreachable(self.cluster, exc) from exc
        status = deployment.status
        health = model.ServerHealth(
            desired=deployment.spec.replicas if deployment.spec else None,
            ready=(status.ready_replicas or 0) if status else None,
            available=(status.available_replicas or 0) if status else None,
            pods=tuple(sorted((_pod_health(pod) for pod in pods), key=lambda p: p.name)),
        )
        return health, _metrics_urls(pods)


def _parse(body: dict[str, Any], skipped: list[str]) -> _Resource | None:
    kind = body.get("kind")
    meta = body.get("metadata") or {}
    where = f"{kind} {meta.get('namespace')}/{meta.get('name')}"
    try:
        if kind == "FeatureView":
            return v1alpha1.FeatureView.model_validate(body)
        if kind == "FeatureService":
            return v1alpha1.FeatureService.model_validate(body)
    except pydantic.ValidationError as exc:
        skipped.append(
            f"{where}: does not fit this featurekube's models ({exc.error_count()} problem(s))"
        )
    return None


def _pod_health(pod: Any) -> model.PodHealth:
    statuses = (pod.status.container_statuses if pod.status else None) or []
    ready = any(
        c.type == "Ready" and c.status == "True"
        for c in (pod.status.conditions if pod.status else None) or []
    )
    return model.PodHealth(
        name=pod.metadata.name,
        phase=(pod.status.phase if pod.status else None) or "Unknown",
        ready=ready,
        restarts=sum(s.restart_count or 0 for s in statuses),
    )


def _metrics_urls(pods: Iterable[Any]) -> list[str]:
    urls = []
    for pod in pods:
        ip = pod.status.pod_ip if pod.status else None
        if not ip or (pod.status.phase or "") != "Running":
            continue
        port = METRICS_PORT
        for container in pod.spec.containers or ():
            for declared in container.ports or ():
                if declared.name == "metrics":
                    port = declared.container_port
        host = f"[{ip}]" if ":" in ip else ip
        urls.append(f"http://{host}:{port}/metrics")
    return urls[:MAX_SCRAPED_PODS]
