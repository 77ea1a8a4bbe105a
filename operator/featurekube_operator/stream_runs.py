"""Running the streams of a view's versions: read, decide (:mod:`.streams`), write;
does I/O (the Kubernetes API, the streams' progress documents on S3).

Called by :func:`featurekube_operator.reconcile.reconcile_feature_view` in two steps:
:func:`observe` before the view's windows are planned (each streaming version's start,
where its batch windows stop), and :func:`run` after, which creates the missing
SparkApplications, deletes those of versions no longer active, reads each stream's
report and returns its status entries, ``Streaming`` condition and metrics.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pydantic

from featurekube import versions as version_specs
from featurekube.materialize import stream_plan
from featurekube.spec import v1alpha1
from featurekube_operator import jobspec, naming, streams
from featurekube_operator.conditions import Condition
from featurekube_operator.credentials import Credentials

if TYPE_CHECKING:
    from featurekube_operator.reconcile import Context

__all__ = ["Planned", "observe", "run"]

log = logging.getLogger(__name__)

SPARK_API = ("sparkoperator.k8s.io/v1beta2", "SparkApplication")


@dataclass(frozen=True)
class Planned:
    """A streaming version: its spec, its start, and its application if it exists."""

    view: v1alpha1.FeatureView
    """The view as this version runs it."""
    since: dt.datetime
    application: Mapping[str, Any] | None
    history_start: dt.datetime | None = None
    """Where the version's batch windows start (the view's first window)."""


def _version_view(
    view: v1alpha1.FeatureView, snapshot: Mapping[str, Any] | None
) -> v1alpha1.FeatureView | None:
    frozen = version_specs.read_snapshot_spec(snapshot or {})
    if frozen is None:
        return view
    try:
        return view.model_copy(
            update={"spec": version_specs.resolve_version_spec(frozen, view.spec)}
        )
    except pydantic.ValidationError:
        return None


def observe(
    ctx: Context,
    view: v1alpha1.FeatureView,
    active: Iterable[int],
    snapshots: Mapping[int, Mapping[str, Any]],
    status: Mapping[str, Any],
    first_start: dt.datetime,
    now: dt.datetime,
) -> dict[int, Planned]:
    """The active versions that stream, each with its start: recorded (on its
    application or in the status), or the latest schedule tick now."""
    namespace, name = view.metadata.namespace or "default", view.metadata.name
    views = {v: _version_view(view, snapshots.get(v)) for v in active}
    streaming = {v: w for v, w in views.items() if w is not None and w.spec.source.stream}
    if not streaming:
        return {}
    apps = {
        int((a["metadata"].get("labels") or {}).get(naming.LABEL_VERSION, 0)): a
        for a in ctx.kube.find(*SPARK_API, namespace, {streams.LABEL_STREAM_OF: name})
    }
    planned = {}
    for version, version_view in sorted(streaming.items()):
        app = apps.get(version)
        since = streams.read_since(app, status, version) or streams.stream_since(
            version_view.spec.materialization.schedule, first_start, now
        )
        planned[version] = Planned(version_view, since, app, first_start)
    return planned


def run(
    ctx: Context,
    view: v1alpha1.FeatureView,
    planned: Mapping[int, Planned],
    snapshots: Mapping[int, Mapping[str, Any]],
    owner: Mapping[str, Any],
    access: Credentials | None,
    now: dt.datetime,
) -> tuple[list[dict[str, Any]], Condition | None]:
    """Start what is missing, stop what is retired, and report: the ``status.streams``
    entries and the ``Streaming`` condition (None for a view that does not stream)."""
    settings = ctx.settings
    namespace, name = view.metadata.namespace or "default", view.metadata.name
    streamed = bool(planned) or bool((owner.get("status") or {}).get("streams"))
    retired = (
        ctx.kube.find(*SPARK_API, namespace, {streams.LABEL_STREAM_OF: name}) if streamed else []
    )
    for found in retired:
        version = int((found["metadata"].get("labels") or {}).get(naming.LABEL_VERSION, 0))
        if version not in planned:
            ctx.kube.delete(*SPARK_API, namespace, found["metadata"]["name"])
    states = []
    for version, item in sorted(planned.items()):
        app = item.application
        if app is None:
            frozen = version_specs.read_snapshot_spec(snapshots.get(version) or {})
            ctx.kube.apply(
                jobspec.render_job_spec(
                    view, version, frozen or view.spec.to_yaml_dict(), settings, owner
                )
            )
            ctx.kube.create(
                streams.render_stream_application(
                    item.view, version, item.since, settings, owner, access, item.history_start
                )
            )
        offline = naming.offline_uri(settings, namespace, name, version)
        progress = _read_progress(ctx, stream_plan.progress_uri(offline), item.since)
        states.append(
            streams.stream_state(
                version, item.since, app, progress, now, streams.application_name(name, version)
            )
        )
    _export(ctx, namespace, name, states)
    if not states:
        return [], None
    return [streams.render_stream_status(s) for s in states], streams.stream_condition(states)


def _read_progress(ctx: Context, uri: str, since: dt.datetime) -> stream_plan.StreamProgress | None:
    """The stream's last report; None before its first (or when it cannot be read, which
    the next reconcile tries again)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("s3", "s3a"):
        return None
    try:
        answer = ctx.offline.client.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))
        document = answer["Body"].read(stream_plan.PROGRESS_MAX_BYTES + 1)
        progress = stream_plan.read_progress(document)
    except Exception as exc:  # no report yet, or S3 away: not the view's fault
        log.debug("no stream progress at %s: %s", uri, exc)
        return None
    # A report of an earlier run from another start (a re-created version) is not this one's.
    if progress.since and not progress.since.startswith(since.strftime("%Y-%m-%dT%H:%M:%S")):
        return None
    return progress


def _export(ctx: Context, namespace: str, name: str, states: list[streams.StreamState]) -> None:
    metrics = ctx.metrics
    running: dict[tuple[str, ...], float] = {}
    lag: dict[tuple[str, ...], float] = {}
    latency: dict[tuple[str, ...], float] = {}
    last: dict[tuple[str, ...], float] = {}
    dead: dict[tuple[str, ...], float] = {}
    late: dict[tuple[str, ...], float] = {}
    history: dict[tuple[str, ...], float] = {}
    for state in states:
        key: tuple[str, ...] = (str(state.version),)
        running[key] = 1.0 if state.state == "Running" else 0.0
        progress = state.progress
        if progress is None:
            continue
        if progress.consumer_lag is not None:
            lag[key] = float(progress.consumer_lag)
        if progress.latency_p50_seconds is not None:
            latency[key] = progress.latency_p50_seconds
        if progress.last_event_time:
            moment = dt.datetime.fromisoformat(progress.last_event_time.replace("Z", "+00:00"))
            last[key] = moment.timestamp()
        dead[key] = float(progress.dead_letters)
        late[key] = float(progress.late)
        history[key] = float(progress.history_missing if progress.waiting_for_history else 0)
    metrics.stream_running.set_view(namespace, name, running)
    metrics.stream_consumer_lag.set_view(namespace, name, lag)
    metrics.stream_latency.set_view(namespace, name, latency)
    metrics.stream_last_event.set_view(namespace, name, last)
    metrics.stream_dead_letters.set_view(namespace, name, dead)
    metrics.stream_late_events.set_view(namespace, name, late)
    metrics.stream_history_missing.set_view(namespace, name, history)
