"""A streaming view version's long-running SparkApplication and what its state means;
pure, no I/O.

Per version whose spec has ``source.stream``, one SparkApplication runs
:mod:`featurekube.materialize.stream_job` with restart policy ``Always`` (the Spark
Operator submits it again whenever it stops, failed or not, after a linear backoff of
``onFailureRetryInterval`` seconds per attempt). Its checkpoint lives under the
version's offline table, so a new driver goes on from the last committed micro-batch.

The split between batch and stream is fixed once per version (:func:`stream_since`):
the latest tick of the view's schedule at or before the stream was first deployed
(never before the first window's start). Batch windows end there; the stream writes
every event from there on. It is recorded on the application (an annotation) and in
the view's status, so neither a restarted operator nor a redeployed stream moves it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from croniter import croniter

from featurekube.materialize import stream_plan
from featurekube.spec import v1alpha1
from featurekube_operator import desired, naming
from featurekube_operator.conditions import Condition
from featurekube_operator.credentials import Credentials
from featurekube_operator.settings import OperatorSettings

__all__ = [
    "ANNOTATION_SINCE",
    "KAFKA_CA_MOUNT",
    "LABEL_STREAM_OF",
    "RETRY_INTERVAL_SECONDS",
    "WAITING_FOR_HISTORY",
    "StreamState",
    "application_name",
    "read_since",
    "render_stream_application",
    "render_stream_status",
    "stream_condition",
    "stream_since",
    "stream_state",
]

LABEL_STREAM_OF = "featurekube.dev/stream-of"
"""The view a streaming SparkApplication belongs to. Not the window runs' label
(``featurekube.dev/feature-view``): the operator reads those as attempts at windows."""
ANNOTATION_SINCE = "featurekube.dev/stream-since"
"""The stream's start, on its SparkApplication."""
KAFKA_CA_MOUNT = "/etc/featurekube/kafka-ca"
RETRY_INTERVAL_SECONDS = 10
"""The Spark Operator waits this many seconds times the attempts so far before it
submits a stopped stream again."""
STALE_REPORT_SECONDS = 300
WAITING_FOR_HISTORY = "WaitingForHistory"
"""A streaming aggregation's state (and the ``Streaming`` condition's reason) while it
waits for the batch windows' history before its start."""
"""A running stream that has not reported for this long is shown as not streaming."""


def application_name(view: str, version: int) -> str:
    """``<view>-v<version>-stream`` (a view's name is at most 40 characters).

    >>> application_name("driver-trips", 3)
    'driver-trips-v3-stream'
    """
    return f"{view}-v{version}-stream"


def stream_since(schedule: str, first_start: dt.datetime, deployed: dt.datetime) -> dt.datetime:
    """The latest tick of ``schedule`` at or before ``deployed``, but not before
    ``first_start``: where batch windows stop and the stream starts.

    >>> utc = dt.UTC
    >>> stream_since("@hourly", dt.datetime(2026, 1, 1, tzinfo=utc),
    ...              dt.datetime(2026, 3, 1, 8, 25, tzinfo=utc)).isoformat()
    '2026-03-01T08:00:00+00:00'
    """
    after = deployed.astimezone(dt.UTC) + dt.timedelta(microseconds=1)
    tick: dt.datetime = croniter(schedule, after).get_prev(dt.datetime)
    return max(first_start.astimezone(dt.UTC), tick.astimezone(dt.UTC))


def read_since(
    application: Mapping[str, Any] | None, status: Mapping[str, Any], version: int
) -> dt.datetime | None:
    """The stream's start as recorded: on its application, else in the view's status."""
    recorded = None
    if application is not None:
        recorded = ((application.get("metadata") or {}).get("annotations") or {}).get(
            ANNOTATION_SINCE
        )
    if recorded is None:
        for entry in status.get("streams") or ():
            if entry.get("version") == version:
                recorded = entry.get("since")
    if not recorded:
        return None
    try:
        return dt.datetime.fromisoformat(str(recorded).replace("Z", "+00:00")).astimezone(dt.UTC)
    except ValueError:
        return None


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _kafka_env(settings: OperatorSettings) -> tuple[list[dict[str, Any]], bool]:
    """The stream job's Kafka security env (:data:`stream_plan.KAFKA_ENV`), and whether
    the CA Secret is mounted."""
    names = stream_plan.KAFKA_ENV
    env: list[dict[str, Any]] = []
    if settings.kafka_security_protocol != "PLAINTEXT":
        env.append({"name": names["protocol"], "value": settings.kafka_security_protocol})
    if settings.kafka_sasl_mechanism:
        env.append({"name": names["mechanism"], "value": settings.kafka_sasl_mechanism})
        for key in ("username", "password"):
            env.append(
                {
                    "name": names[key],
                    "valueFrom": {"secretKeyRef": {"name": settings.kafka_sasl_secret, "key": key}},
                }
            )
    mounted = settings.kafka_tls and bool(settings.kafka_tls_ca_secret)
    if mounted:
        env.append({"name": names["ca_file"], "value": f"{KAFKA_CA_MOUNT}/ca.crt"})
    return env, mounted


def render_stream_application(
    view: v1alpha1.FeatureView,
    version: int,
    since: dt.datetime,
    settings: OperatorSettings,
    owner: Mapping[str, Any],
    access: Credentials | None = None,
    history_start: dt.datetime | None = None,
) -> dict[str, Any]:
    """The SparkApplication that runs version ``version`` of ``view``'s stream from
    ``since``, restarted whenever it stops; its pods take the namespace's credentials
    ``access`` and the operator's Kafka settings. ``history_start``: where the
    version's batch windows start, which tells a streaming aggregation whether to wait
    for their history."""
    namespace = view.metadata.namespace or "default"
    name = view.metadata.name
    labels = {LABEL_STREAM_OF: name, naming.LABEL_VERSION: str(version)}
    arguments = [
        "--spec",
        f"{desired.SPEC_MOUNT}/{desired.SNAPSHOT_KEY}",
        "--since",
        _iso(since),
        "--version",
        str(version),
        "--offline-uri",
        naming.offline_uri(settings, namespace, name, version),
    ]
    if history_start is not None:
        arguments += ["--history-start", _iso(history_start)]
    if view.spec.materialization.online:
        arguments += ["--online-table", naming.online_table(settings, namespace, name, version)]
    if settings.kafka_bootstrap_servers:
        arguments += ["--bootstrap-servers", settings.kafka_bootstrap_servers]
    kafka_env, ca_mounted = _kafka_env(settings)
    env = [*desired.render_job_env(view, settings, access), *kafka_env]
    mounts = [{"name": "kafka-ca", "mountPath": KAFKA_CA_MOUNT, "readOnly": True}]

    def pod(extra: Mapping[str, Any]) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "cores": 1,
            "memory": "2g",
            "labels": labels,
            "env": env,
            "podSecurityContext": dict(desired.RESTRICTED_POD),
            "securityContext": dict(desired.RESTRICTED_CONTAINER),
            **extra,
        }
        if ca_mounted:
            spec["volumeMounts"] = mounts
        return spec

    spec: dict[str, Any] = {
        "type": "Python",
        "mode": "cluster",
        "pythonVersion": "3",
        "sparkVersion": settings.spark_version,
        "image": settings.spark_image,
        "mainApplicationFile": settings.spark_stream_main_file,
        "arguments": arguments,
        "sparkConf": {**desired.SPARK_CONF, **settings.spark_conf},
        # A stream never ends by itself: whatever stops it, it is submitted again and
        # goes on from its checkpoint.
        "restartPolicy": {
            "type": "Always",
            "onFailureRetryInterval": RETRY_INTERVAL_SECONDS,
            "onSubmissionFailureRetryInterval": RETRY_INTERVAL_SECONDS,
        },
        "driver": pod(
            {
                "serviceAccount": settings.spark_service_account,
                "configMaps": [
                    {"name": naming.job_spec_name(name, version), "path": desired.SPEC_MOUNT}
                ],
            }
        ),
        "executor": pod({"instances": 1}),
    }
    if ca_mounted:
        spec["volumes"] = [
            {"name": "kafka-ca", "secret": {"secretName": settings.kafka_tls_ca_secret}}
        ]
    return {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {
            "name": application_name(name, version),
            "namespace": namespace,
            "labels": labels,
            "annotations": {ANNOTATION_SINCE: _iso(since)},
            "ownerReferences": [desired.owner_reference(owner)],
        },
        "spec": spec,
    }


@dataclass(frozen=True)
class StreamState:
    """A version's stream as observed: its application's state and its last report."""

    version: int
    since: dt.datetime
    application: str
    state: str
    """Running, WaitingForHistory, Starting, Restarting or Failed."""
    message: str
    progress: stream_plan.StreamProgress | None


_STARTING = ("", "NEW", "SUBMITTED", "PENDING_RERUN", "INVALIDATING", "UNKNOWN")
_RESTARTING = ("FAILING", "SUCCEEDING", "COMPLETED", "SUBMISSION_FAILED")


def stream_state(
    version: int,
    since: dt.datetime,
    application: Mapping[str, Any] | None,
    progress: stream_plan.StreamProgress | None,
    now: dt.datetime,
    name: str = "",
) -> StreamState:
    """What a stream's application (``name``, None while it is being created) and
    report say about it."""
    name = str(((application or {}).get("metadata") or {}).get("name") or name)
    state_block = ((application or {}).get("status") or {}).get("applicationState") or {}
    raw = str(state_block.get("state") or "")
    error = str(state_block.get("errorMessage") or "")[:512]
    if application is None or raw in _STARTING:
        return StreamState(
            version, since, name, "Starting", "the stream is being submitted", progress
        )
    if raw in _RESTARTING:
        why = f": {error}" if error else ""
        return StreamState(
            version,
            since,
            name,
            "Restarting",
            f"the stream stopped ({raw}){why}; it is submitted again",
            progress,
        )
    if raw == "FAILED":
        return StreamState(version, since, name, "Failed", f"the stream failed: {error}", progress)
    reported = _parse(progress.updated_at) if progress is not None else None
    if reported is None or (now - reported).total_seconds() > STALE_REPORT_SECONDS:
        return StreamState(
            version,
            since,
            name,
            "Starting",
            "the driver runs; the stream has not reported yet",
            progress,
        )
    if progress is not None and progress.waiting_for_history:
        return StreamState(
            version, since, name, WAITING_FOR_HISTORY, _waiting_message(progress), progress
        )
    return StreamState(version, since, name, "Running", "the stream is running", progress)


def _waiting_message(progress: stream_plan.StreamProgress) -> str:
    span = ""
    if progress.history_missing_from and progress.history_missing_until:
        span = f" (events from {progress.history_missing_from} to {progress.history_missing_until})"
    return (
        f"the stream waits for the batch windows to store the history its windows reach back "
        f"to: {progress.history_missing} intervals before its start{span} are not in the tile "
        "table yet; it reads the topic once they are, and writes nothing meanwhile"
    )


def stream_condition(states: list[StreamState]) -> Condition:
    """The ``Streaming`` condition of a view from its versions' streams."""
    if not states:
        return Condition("Streaming", False, "NoStream", "the view has no stream source")
    down = [s for s in states if s.state != "Running"]
    if not down:
        versions = ", ".join(str(s.version) for s in states)
        return Condition("Streaming", True, "Running", f"the stream of version {versions} runs")
    worst = down[0]
    return Condition("Streaming", False, worst.state, f"version {worst.version}: {worst.message}")


def render_stream_status(state: StreamState) -> dict[str, Any]:
    """A ``status.streams`` entry (:class:`~featurekube.spec.v1alpha1.StreamStatus`)."""
    entry: dict[str, Any] = {
        "version": state.version,
        "since": _iso(state.since),
        "application": state.application,
        "state": state.state,
    }
    progress = state.progress
    if progress is not None:
        if progress.consumer_lag is not None:
            entry["consumerLag"] = progress.consumer_lag
        if progress.last_event_time:
            entry["lastEventTime"] = progress.last_event_time
        if progress.latency_p50_seconds is not None:
            entry["latencySeconds"] = round(progress.latency_p50_seconds, 3)
        entry["deadLetters"] = progress.dead_letters
        if progress.late:
            entry["lateEvents"] = progress.late
        if progress.updated_at:
            entry["reportedAt"] = progress.updated_at
    return entry


def _parse(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)
    except ValueError:
        return None
