"""The live FeatureViews and FeatureServices, read through the Kubernetes API; does I/O.

The only module of :mod:`featurekube.planning` that talks to a cluster: it connects
with the kubeconfig in ``KUBECONFIG`` (its current context), lists featurekube's
objects, parses them through the spec models, and turns the Kubernetes client's
exceptions into errors that say what to do:

    FeaturekubeError
    └── errors.ClusterError               the cluster could not be read
        ├── errors.KubeconfigError        no usable kubeconfig
        ├── errors.ClusterUnreachableError  the API server did not answer
        ├── errors.CrdsNotInstalledError  the API server does not serve featurekube.dev
        └── errors.ForbiddenError         the identity may not list the objects
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import pydantic
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from featurekube import errors, versions
from featurekube.spec import loader, v1alpha1

__all__ = [
    "PLURALS",
    "Cluster",
    "LiveObjects",
    "connect",
    "connect_here",
    "list_objects",
    "read_live",
    "read_snapshots",
    "unreachable",
]

PLURALS = {"FeatureView": "featureviews", "FeatureService": "featureservices"}
"""The resource name of each kind in the API."""

CONNECT_TIMEOUT_SECONDS = 5.0
"""How long to wait for a TCP connection to the API server."""
READ_TIMEOUT_SECONDS = 30.0
"""How long to wait for the API server's answer to one list."""
RETRIES = 1
"""Further attempts after a failed connection, before the server is called unreachable."""


@dataclass(frozen=True)
class Cluster:
    """A connection to the API server of a kubeconfig's current context."""

    api: kubernetes.client.ApiClient
    """The client, configured from the kubeconfig."""
    server: str
    """The API server's URL, for messages."""
    context: str
    """The kubeconfig context used."""
    namespace: str | None
    """The context's namespace, if it sets one."""
    kubeconfig: str
    """Where the kubeconfig was read from."""


@dataclass(frozen=True)
class LiveObjects:
    """What :func:`read_live` found."""

    resources: tuple[loader.Resource, ...]
    """The live objects, parsed through the spec models, status included."""
    warnings: tuple[str, ...] = ()
    """What could not be looked at, and so was not checked."""


@contextlib.contextmanager
def connect(kubeconfig: str | None = None) -> Iterator[Cluster]:
    """Connect to the current context of ``kubeconfig``, by default ``$KUBECONFIG``
    (read now, not when the Kubernetes client was imported), else ~/.kube/config.

    Raises :class:`errors.KubeconfigError` when there is no usable kubeconfig; nothing is sent
    to the server until :func:`read_live`.
    """
    path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())
    configuration = kubernetes.client.Configuration()
    try:
        _, current = kubernetes.config.list_kube_config_contexts(config_file=path)
        kubernetes.config.load_kube_config(
            config_file=path, client_configuration=configuration, persist_config=False
        )
    except (kubernetes.config.ConfigException, OSError, ValueError) as exc:
        raise errors.KubeconfigError(
            f"cannot use the kubeconfig {path}: {str(exc).rstrip('.')}. Point KUBECONFIG at "
            'the cluster\'s kubeconfig (for the local platform: eval "$(featurekube dev env)")'
        ) from exc
    configuration.retries = RETRIES
    context = current.get("context") or {}
    with kubernetes.client.ApiClient(configuration) as api:
        yield Cluster(
            api=api,
            server=configuration.host,
            context=str(current.get("name", "")),
            namespace=context.get("namespace") or None,
            kubeconfig=path,
        )


IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
"""Where a pod's ServiceAccount namespace is mounted: present only inside a cluster."""


def connect_here(kubeconfig: str | None = None) -> contextlib.AbstractContextManager[Cluster]:
    """A connection to the kubeconfig's cluster (:func:`connect`), or to the pod's own
    cluster when running in one and no kubeconfig is given or set."""
    if kubeconfig is None and "KUBECONFIG" not in os.environ and IN_CLUSTER_NAMESPACE.exists():
        return _connect_in_cluster()
    return connect(kubeconfig)


@contextlib.contextmanager
def _connect_in_cluster() -> Iterator[Cluster]:
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException as exc:
        raise errors.KubeconfigError(
            f"cannot use the pod's service account to reach the cluster: {exc}. Set "
            "KUBECONFIG, or pass kubeconfig=..."
        ) from exc
    with kubernetes.client.ApiClient(configuration) as api:
        yield Cluster(
            api=api,
            server=configuration.host,
            context="in-cluster",
            namespace=IN_CLUSTER_NAMESPACE.read_text().strip() or None,
            kubeconfig="(the pod's service account)",
        )


def read_live(cluster: Cluster, namespaces: Iterable[str]) -> LiveObjects:
    """The FeatureViews of ``namespaces``, and the FeatureServices of every namespace
    (they may use views shared from ``namespaces``).

    An identity that may not list FeatureServices cluster-wide gets those of
    ``namespaces`` only, and a warning that consumers elsewhere were not checked.
    Raises a :class:`errors.ClusterError` saying what went wrong and what to do.
    """
    wanted = sorted(set(namespaces))
    bodies: list[dict[str, Any]] = []
    warnings: list[str] = []
    for namespace in wanted:
        bodies.extend(list_objects(cluster, "FeatureView", namespace))
    try:
        bodies.extend(list_objects(cluster, "FeatureService", None))
    except errors.ForbiddenError as exc:
        warnings.append(
            f"{exc}; FeatureServices outside {', '.join(wanted) or 'no namespace'} were not "
            "checked for breaking changes"
        )
        for namespace in wanted:
            bodies.extend(list_objects(cluster, "FeatureService", namespace))
    return LiveObjects(tuple(_parse(cluster, body) for body in bodies), tuple(warnings))


VersionKey = tuple[str, str, int]
"""(namespace, view, version) of one version of a FeatureView."""


def read_snapshots(cluster: Cluster, namespaces: Iterable[str]) -> dict[VersionKey, dict[str, Any]]:
    """The snapshot of every version of every view of ``namespaces``: what each
    version's data was made from (see :mod:`featurekube.versions`), one list request
    per namespace.

    A namespace whose ConfigMaps the identity may not list gives none: a pull that
    needs a version other than the live spec's then says so.
    """
    core = kubernetes.client.CoreV1Api(cluster.api)
    timeout = (CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS)
    found: dict[VersionKey, dict[str, Any]] = {}
    for namespace in sorted(set(namespaces)):
        try:
            listed = core.list_namespaced_config_map(
                namespace, label_selector=versions.LABEL_VERSION, _request_timeout=timeout
            )
        except ApiException as exc:
            if exc.status in (401, 403):
                continue
            raise errors.ClusterError(
                f"{cluster.server} answered {exc.status} {exc.reason} to listing the "
                f"version snapshots (ConfigMaps) of namespace {namespace}: "
                f"{_status_message(exc)}"
            ) from exc
        for item in listed.items:
            labels = (item.metadata.labels if item.metadata else None) or {}
            view, version = (
                labels.get(versions.LABEL_FEATURE_VIEW),
                labels.get(versions.LABEL_VERSION),
            )
            document = versions.read_snapshot({"data": item.data or {}})
            if view and version and version.isdigit() and document:
                found[(namespace, view, int(version))] = document
    return found


def list_objects(cluster: Cluster, kind: str, namespace: str | None) -> list[dict[str, Any]]:
    """The bodies of every ``kind`` (FeatureView or FeatureService) in ``namespace``, or
    in all namespaces when None. Raises :class:`errors.ForbiddenError` when the identity
    may not list them there, another :class:`errors.ClusterError` for anything else."""
    plural = PLURALS[kind]
    custom = kubernetes.client.CustomObjectsApi(cluster.api)
    timeout = (CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS)
    try:
        if namespace is None:
            found = custom.list_cluster_custom_object(
                v1alpha1.GROUP, v1alpha1.VERSION, plural, _request_timeout=timeout
            )
        else:
            found = custom.list_namespaced_custom_object(
                v1alpha1.GROUP, v1alpha1.VERSION, namespace, plural, _request_timeout=timeout
            )
    except ApiException as exc:
        raise _api_error(cluster, exc, plural, namespace) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise unreachable(cluster, exc) from exc
    items = found.get("items") if isinstance(found, dict) else None
    bodies = [item for item in items or () if isinstance(item, dict)]
    for body in bodies:
        # Items of a list carry their kind, but nothing is lost by making sure.
        body.setdefault("apiVersion", v1alpha1.API_VERSION)
        body.setdefault("kind", kind)
    return bodies


def unreachable(cluster: Cluster, exc: BaseException) -> errors.ClusterUnreachableError:
    """The error to raise when a call to ``cluster`` failed to connect with ``exc``."""
    reason = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
    if isinstance(reason, urllib3.exceptions.SSLError):
        advice = "Check the certificate-authority of the cluster in the kubeconfig"
    else:
        advice = "Check that the cluster is up and that KUBECONFIG points to it"
    return errors.ClusterUnreachableError(
        f"cannot reach the Kubernetes API at {cluster.server} (context "
        f"{cluster.context!r} of {cluster.kubeconfig}): {reason}. {advice}"
    )


def _api_error(
    cluster: Cluster, exc: ApiException, plural: str, namespace: str | None
) -> errors.ClusterError:
    where = f"in namespace {namespace}" if namespace else "in all namespaces"
    message = _status_message(exc)
    if exc.status == 404:
        return errors.CrdsNotInstalledError(
            f"featurekube's CRDs are not installed in {cluster.server}: it does not serve "
            f"{plural}.{v1alpha1.GROUP}/{v1alpha1.VERSION}. Install them with the chart "
            "(helm install featurekube charts/featurekube) or kubectl apply -f crds/"
        )
    if exc.status == 401:
        return errors.ClusterError(
            f"{cluster.server} refused the credentials of context {cluster.context!r} "
            f"(401 Unauthorized): {message}. Renew them in {cluster.kubeconfig}"
        )
    if exc.status == 403:
        return errors.ForbiddenError(
            f"context {cluster.context!r} may not list {plural}.{v1alpha1.GROUP} {where} "
            f"in {cluster.server}: {message}. Grant its identity get and list on "
            f"featureviews and featureservices ({v1alpha1.GROUP})"
        )
    return errors.ClusterError(
        f"{cluster.server} answered {exc.status} {exc.reason} to listing "
        f"{plural}.{v1alpha1.GROUP} {where}: {message}"
    )


def _status_message(exc: ApiException) -> str:
    """The message of the Status object the API server answered with."""
    try:
        status = json.loads(exc.body or "")
    except (TypeError, ValueError):
        return str(exc.reason)
    message = status.get("message") if isinstance(status, dict) else None
    return message if isinstance(message, str) and message else str(exc.reason)


def _parse(cluster: Cluster, body: dict[str, Any]) -> loader.Resource:
    kind = str(body.get("kind"))
    meta = body.get("metadata") or {}
    model = loader.KINDS[kind]
    try:
        resource: loader.Resource = model.model_validate(body)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        raise errors.ClusterError(
            f"the live {kind} {meta.get('namespace')}/{meta.get('name')} in {cluster.server} "
            f"does not fit this featurekube's models ({exc.error_count()} problem(s); first "
            f"{loader.format_path(tuple(first['loc']))}: {first['msg']}): is the featurekube "
            "installed in the cluster older or newer than this CLI?"
        ) from exc
    return resource
