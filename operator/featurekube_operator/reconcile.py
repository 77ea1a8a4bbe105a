"""Reconciling FeatureViews and FeatureServices: read, decide, write; does I/O.

Level-triggered: every call looks at the whole state (the object, its status, the
objects it owns, the tables) and moves it one step towards the desired state. The
process remembers nothing between calls: what a view has materialized is recorded in
its status (see :mod:`.progress`), so a restarted operator converges to the same
objects, and the SparkApplications and Jobs it starts may be deleted once they finish.
Decisions are made by the pure modules :mod:`.progress`, :mod:`.engines`,
:mod:`.desired` and :mod:`.conditions`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic
from kubernetes.client.exceptions import ApiException

from featurekube import backfills
from featurekube.spec import v1alpha1
from featurekube_operator import (
    admission,
    conditions,
    credentials,
    desired,
    engines,
    jobspec,
    monitoring,
    naming,
    pods,
    prefixes,
    progress,
    retention,
    runs,
    serving_security,
    sharing,
    stream_runs,
    tag_labels,
)
from featurekube_operator.conditions import Condition
from featurekube_operator.dynamo import OnlineTables
from featurekube_operator.kube import Kube
from featurekube_operator.metrics import Metrics
from featurekube_operator.offline import OfflineData
from featurekube_operator.settings import OperatorSettings
from featurekube_operator.windows import Window, first_start

__all__ = [
    "Context",
    "Outcome",
    "finalize_feature_view",
    "reconcile_feature_service",
    "reconcile_feature_view",
]

SPARK_API = ("sparkoperator.k8s.io/v1beta2", "SparkApplication")
JOB_API = ("batch/v1", "Job")
RUN_APIS = {SPARK_API[1]: SPARK_API, JOB_API[1]: JOB_API}
"""What an attempt at a window runs as: a SparkApplication (Spark) or a Job (python)."""
LABEL = naming.LABEL_FEATURE_VIEW
JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"
"""The label by which a Job's pods name it: by uid, so that a Job of the same name that
came before (an earlier attempt) is never mistaken for it."""


@dataclass
class Context:
    """What a reconcile reads and writes through."""

    settings: OperatorSettings
    kube: Kube
    tables: OnlineTables
    metrics: Metrics
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    offline: OfflineData = field(default_factory=OfflineData)


@dataclass(frozen=True)
class Outcome:
    """The status to write, and the condition changes worth an event."""

    status: dict[str, Any]
    events: list[Mapping[str, Any]]
    notices: list[monitoring.Notice] = field(default_factory=list)
    """Events beside the condition changes: expectations broken, tags not labelled."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """A merge patch of the object's metadata: the labels mirrored from its tags."""


def _finish(
    body: Mapping[str, Any],
    status: dict[str, Any],
    found: list[Condition],
    now: dt.datetime,
    notices: Sequence[monitoring.Notice] = (),
) -> Outcome:
    old = (body.get("status") or {}).get("conditions")
    generation = body["metadata"].get("generation")
    status["observedGeneration"] = generation
    status["conditions"] = conditions.merge_conditions(old, found, now, generation)
    labels = tag_labels.plan_labels(str(body.get("kind") or "object"), body)
    return Outcome(
        status,
        conditions.transitions(old, status["conditions"]),
        [*notices, *labels.notices],
        labels.metadata,
    )


NOT_MANAGED = "NamespaceNotManaged"
"""The Ready=False reason of an object in a namespace the operator does not manage."""


def _unmanaged(ctx: Context, body: Mapping[str, Any], now: dt.datetime) -> Outcome | None:
    """Not Ready, and nothing created, in a namespace the operator is told to leave
    alone (Kubernetes' own, its own); None elsewhere."""
    namespace = body["metadata"].get("namespace") or "default"
    if namespace not in ctx.settings.excluded:
        return None
    message = (
        f"namespace {namespace} is not one featurekube manages (it leaves "
        f"{', '.join(sorted(ctx.settings.excluded))} alone): nothing runs here; define "
        "feature views and services in a team's namespace"
    )
    outcome = _finish(body, {}, [Condition("Ready", False, NOT_MANAGED, message)], now)
    return Outcome(outcome.status, outcome.events)  # nor are its tags made labels


def _invalid(body: Mapping[str, Any], error: pydantic.ValidationError, now: dt.datetime) -> Outcome:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "spec"
    return _refuse(body, f"{where}: {first['msg']}", now)


def _refuse(body: Mapping[str, Any], problem: str, now: dt.datetime) -> Outcome:
    """InvalidSpec: not Ready and Degraded, saying what to fix; the status's other
    fields stay as they were (status is merge-patched)."""
    message = f"{problem} (fix the spec; nothing runs until then)"
    found = [
        Condition("Ready", False, "InvalidSpec", message),
        Condition("Degraded", True, "InvalidSpec", message),
    ]
    return _finish(body, {}, found, now)


def _credentials(
    ctx: Context, namespace: str, service_account: str
) -> credentials.Credentials | None:
    """The AWS credentials of pods running as ``service_account`` in ``namespace``, by
    the setting ``aws_credentials``; None when the namespace has none."""
    settings = ctx.settings
    if settings.aws_credentials == credentials.AMBIENT:
        return credentials.Credentials()
    try:
        secret = ctx.kube.get("v1", "Secret", namespace, settings.aws_credentials_secret)
        account = (
            None if secret else ctx.kube.get("v1", "ServiceAccount", namespace, service_account)
        )
    except ApiException as exc:
        if exc.status != 403:
            raise
        return None  # the operator may not look there: nothing to run with either
    return credentials.resolve(
        settings.aws_credentials, settings.aws_credentials_secret, secret, account
    )


def _no_credentials(
    ctx: Context, body: Mapping[str, Any], service_account: str, now: dt.datetime
) -> Outcome:
    """Not Ready, reason CredentialsMissing: the namespace has no credentials of its
    own, and nothing runs there on anyone else's."""
    namespace = body["metadata"].get("namespace") or "default"
    message = credentials.missing_message(
        namespace, ctx.settings.aws_credentials_secret, service_account
    )
    return _finish(body, {}, [Condition("Ready", False, credentials.MISSING, message)], now)


# -- FeatureView ----------------------------------------------------------------------


def _snapshots(ctx: Context, namespace: str, name: str) -> dict[int, dict[str, Any]]:
    """Version -> its immutable spec snapshot (a ConfigMap)."""
    found = ctx.kube.find("v1", "ConfigMap", namespace, {naming.LABEL_FEATURE_VIEW: name})
    snapshots = {}
    for item in found:
        labels = item["metadata"].get("labels") or {}
        if naming.LABEL_VERSION in labels:
            snapshots[int(labels[naming.LABEL_VERSION])] = item
    return snapshots


def _versions(ctx: Context, namespace: str, name: str) -> dict[int, str]:
    """Version -> data fingerprint, from the view's immutable spec snapshots."""
    return {
        version: (item["metadata"].get("labels") or {}).get(naming.LABEL_FINGERPRINT, "")
        for version, item in _snapshots(ctx, namespace, name).items()
    }


def _services_of(ctx: Context, view: v1alpha1.FeatureView) -> tuple[list[dict[str, Any]], bool]:
    """The FeatureServices that may use ``view``, and whether every one could be read:
    those of every namespace, else (an operator that may not list them cluster-wide)
    those of the namespaces the view is shared with by name."""
    try:
        return ctx.kube.find_everywhere(v1alpha1.API_VERSION, "FeatureService"), True
    except ApiException as exc:
        if exc.status != 403:
            raise
    shared = view.spec.shared_with or []
    complete = "*" not in shared
    found: list[dict[str, Any]] = []
    for namespace in sorted({view.metadata.namespace or "default", *shared} - {"*"}):
        try:
            found.extend(ctx.kube.find(v1alpha1.API_VERSION, "FeatureService", namespace, {}))
        except ApiException as exc:
            if exc.status != 403:
                raise
            complete = False
    return found, complete


def _service_uses(ctx: Context, view: v1alpha1.FeatureView) -> tuple[set[int], set[int], bool]:
    """The versions of ``view`` that FeatureServices, in any namespace it is shared
    with, pin (kept materialized), those their serving plans read now (kept), and
    whether every service that may use it was seen (else nothing may be deleted)."""
    namespace, name = view.metadata.namespace or "default", view.metadata.name
    pinned: set[int] = set()
    read: set[int] = set()
    services, complete = _services_of(ctx, view)
    for body in services:
        where = body["metadata"].get("namespace") or "default"
        if not sharing.may_read(view, where):
            continue
        for ref in (body.get("spec") or {}).get("features") or ():
            same = ref.get("featureView") == name and (ref.get("namespace") or where) == namespace
            if same and isinstance(ref.get("version"), int):
                pinned.add(ref["version"])
        for item in (body.get("status") or {}).get("servedVersions") or ():
            same = item.get("featureView") == name and item.get("namespace") == namespace
            if same and isinstance(item.get("version"), int):
                read.add(item["version"])
    return pinned, read, complete


def _parse_backfill(
    body: Mapping[str, Any], before: Mapping[str, Any]
) -> tuple[str | None, backfills.BackfillRequest | None, str]:
    """The view's backfill annotation if it is a request not yet acted on: its text,
    the parsed request, and what is wrong with it (empty when nothing is)."""
    text = (body["metadata"].get("annotations") or {}).get(backfills.ANNOTATION)
    if not text or text == before.get("backfillRequest"):
        return None, None, ""
    try:
        return text, backfills.parse_request(text), ""
    except ValueError as exc:
        return text, None, str(exc)


def _span(window: Window) -> str:
    return f"[{window.start:%Y-%m-%dT%H:%MZ}, {window.end:%Y-%m-%dT%H:%MZ})"


def reconcile_feature_view(ctx: Context, body: Mapping[str, Any]) -> Outcome:
    """Move one FeatureView a step towards materialized and serving; return its status.

    The view's progress is read from its status and written back to it; its
    SparkApplications and Jobs are only observed (what finished since) and, once their
    outcome is recorded and newer ones fill the history limits, deleted.
    """
    now = ctx.clock()
    if (unmanaged := _unmanaged(ctx, body, now)) is not None:
        return unmanaged
    try:
        view = v1alpha1.FeatureView.model_validate(body)
    except pydantic.ValidationError as exc:
        return _invalid(body, exc, now)
    # What validate refuses runs nothing, however the object got here: SQL outside the
    # allowlist could read other tables or the job's credentials.
    refused = admission.check_object(body)
    if refused:
        return _refuse(body, admission.describe(refused), now)
    settings, spec = ctx.settings, view.spec
    namespace, name = view.metadata.namespace or "default", view.metadata.name
    # Paths outside the namespace's S3 prefixes, and a namespace without credentials
    # of its own, run nothing.
    outside = prefixes.view_problems(view, settings)
    if outside:
        return _refuse(body, "; ".join(outside), now)
    access = _credentials(ctx, namespace, settings.spark_service_account)
    if access is None:
        return _no_credentials(ctx, body, settings.spark_service_account, now)

    snapshots = _snapshots(ctx, namespace, name)
    versions = {
        v: (item["metadata"].get("labels") or {}).get(naming.LABEL_FINGERPRINT, "")
        for v, item in snapshots.items()
    }
    fingerprint = naming.data_fingerprint(spec)
    latest = next((v for v, f in sorted(versions.items()) if f == fingerprint), None)
    if latest is None:
        latest = max(versions, default=0) + 1
        ctx.kube.create(desired.render_snapshot(view, latest, settings, body))
    status_before = body.get("status") or {}
    serving = status_before.get("version")
    if serving not in versions and serving != latest:
        serving = None
    pinned, read, all_seen = _service_uses(ctx, view)
    pinned &= set(versions)
    # Pinned versions go on materializing, like the latest and the serving one.
    active = sorted({latest} | ({serving} if serving else set()) | pinned)
    caught_up: set[int] = set()

    tags = {"featurekube.dev/namespace": namespace, "featurekube.dev/feature-view": name}
    apps = [
        runs.read_run(item, kind)
        for kind, api in RUN_APIS.items()
        for item in ctx.kube.find(*api, namespace, {LABEL: name})
    ]
    recorded = {
        v: p for v in versions if (p := progress.progress_from_status(status_before, v)) is not None
    }
    request_text, request, request_error = _parse_backfill(body, status_before)

    created = dt.datetime.fromisoformat(
        str(body["metadata"].get("creationTimestamp") or now.isoformat()).replace("Z", "+00:00")
    )
    start = first_start(spec.materialization.schedule, spec.materialization.start_time, created)
    materializes = spec.source.batch is not None and (
        spec.materialization.online or spec.materialization.offline
    )
    limits = progress.Limits(
        max_in_flight=settings.max_windows_in_flight,
        max_span=dt.timedelta(seconds=settings.backfill_window_seconds),
        backoff=settings.retry_backoff_seconds,
        max_backoff=settings.max_retry_backoff_seconds,
        max_attempts=settings.max_failed_attempts,
    )
    # Streaming versions: batch windows stop where each stream starts.
    streaming = stream_runs.observe(ctx, view, active, snapshots, status_before, start, now)
    records: dict[int, progress.Progress] = {}
    moved: dict[int, progress.WindowRecord] = {}
    completed: dict[int, list[tuple[runs.Run, runs.Outcome]]] = {}
    failures: list[str] = []
    exhausted: list[str] = []
    next_retry: dt.datetime | None = None
    started: set[str] = set()
    for version in active:
        if spec.materialization.online:
            ctx.tables.ensure(naming.online_table(settings, namespace, name, version), tags)
        record = recorded.get(version) or progress.Progress(version)
        outcomes = {
            run.name: runs.read_outcome(run, _driver(ctx, namespace, run))
            for run in progress.news(record, apps)
        }
        seen = progress.observe(record, apps, start, outcomes)
        _count(ctx, namespace, name, seen, outcomes)
        completed[version] = [
            (r, outcomes[r.name]) for r in (*seen.succeeded, *seen.failed) if r.name in outcomes
        ]
        record = seen.progress
        if seen.last is not None:
            moved[version] = seen.last
        if not materializes:
            records[version] = record
            continue
        for span_start, span_end in request.spans if request else ():
            record = progress.request_backfill(
                record, Window(span_start, span_end), request.id if request else "", start
            )
        decision = progress.decide(
            record,
            apps,
            schedule=spec.materialization.schedule,
            first_start=start,
            now=now,
            limits=limits,
            generation=view.metadata.generation or 0,
            plan_until=streaming[version].since if version in streaming else None,
        )
        if decision.start:
            # The jobs about to start read the view's governing fields as they are now.
            frozen = jobspec.read_snapshot_spec(snapshots.get(version) or {})
            ctx.kube.apply(
                jobspec.render_job_spec(
                    view, version, frozen or spec.to_yaml_dict(), settings, body
                )
            )
        started |= _start(ctx, view, version, decision, apps, body, access)
        records[version] = decision.progress
        for entry in decision.progress.failed:
            if entry in decision.exhausted:
                exhausted.append(
                    f"window {_span(entry.window)} of version {version} failed "
                    f"{entry.attempt} times and is no longer retried: {entry.reason}; fix the "
                    f"cause, then run it again: featurekube backfill {name} -n {namespace} "
                    f"--start {entry.window.start:%Y-%m-%dT%H:%M:%SZ} "
                    f"--end {entry.window.end:%Y-%m-%dT%H:%M:%SZ}"
                )
            else:
                failures.append(
                    f"window {_span(entry.window)} of version {version} failed "
                    f"(attempt {entry.attempt}): {entry.reason or 'no message'}"
                )
        if decision.next_retry_at and (next_retry is None or decision.next_retry_at < next_retry):
            next_retry = decision.next_retry_at
        if decision.caught_up:
            caught_up.add(version)
        if version == latest and decision.caught_up:
            serving = latest
    # Applications whose outcome the status read here holds are history: keep a few.
    history = progress.collectable(
        recorded,
        apps,
        keep_succeeded=settings.succeeded_history_limit,
        keep_failed=settings.failed_history_limit,
        now=now,
    )
    retired = [a.name for a in apps if a.version not in active and a.finished]
    collected = set(history) | set(retired)
    for app in sorted(apps, key=lambda a: a.name):
        if app.name in collected and app.name not in started:
            # A Job goes in the background, with its pod (kube.delete's propagation).
            ctx.kube.delete(*RUN_APIS[app.kind], namespace, app.name)

    if not materializes:
        serving = latest
    # A pinned version serves once it has caught up, and goes on serving while pinned.
    before_serving = set(status_before.get("servingVersions") or ())
    serving_versions = {v for v in pinned if v in caught_up or v in before_serving}
    if not materializes:
        serving_versions = set(pinned)
    if serving is not None:
        serving_versions.add(serving)
    running = {a.version for a in apps if not a.finished}
    kept = _retire(
        ctx,
        view,
        versions,
        {latest, *serving_versions, *pinned, *read, *running},
        retention.retired_from_status(status_before),
        now,
        may_delete=all_seen,
    )
    status: dict[str, Any] = {
        "latestVersion": latest,
        "progress": progress.progress_to_status(records.values()),
        "servingVersions": sorted(serving_versions),
        "retiredVersions": retention.retired_to_status(kept.retired),
    }
    if request_text is not None and not request_error:
        status["backfillRequest"] = request_text
    found: list[Condition] = []
    if serving is not None:
        record = records.get(serving) or progress.Progress(serving)
        status["version"] = serving
        if spec.materialization.online:
            status["onlineTable"] = naming.online_table(settings, namespace, name, serving)
        if spec.materialization.offline:
            status["offlineUri"] = naming.offline_uri(settings, namespace, name, serving)
        if record.materialized_until is not None:
            status["lastMaterializedWindow"] = {
                "start": start.isoformat().replace("+00:00", "Z"),
                "end": record.materialized_until.isoformat().replace("+00:00", "Z"),
            }
            # None clears the rows of an earlier window (status is merge-patched).
            status["rows"] = _last_window_rows(moved.get(serving), status_before, status)
        ctx.metrics.freshness.set(namespace, name, record.materialized_until)
    done_until = status.get("lastMaterializedWindow", {}).get("end")
    if not materializes:
        found.append(Condition("Materialized", False, "PushSource", "values arrive through Push"))
    elif done_until:
        found.append(
            Condition("Materialized", True, "WindowsCompleted", f"materialized up to {done_until}")
        )
    else:
        found.append(Condition("Materialized", False, "Backfilling", "no window has completed yet"))
    found.append(
        _stuck_runs(
            ctx, namespace, name, apps, _degraded(exhausted, failures, next_retry, request_error)
        )
    )
    stream_entries, streaming_condition = stream_runs.run(
        ctx, view, streaming, snapshots, body, access, now
    )
    if streaming_condition is not None:
        status["streams"] = stream_entries
        found.append(streaming_condition)
    ready = serving is not None and (not materializes or done_until is not None)
    if ready and serving != latest:
        message = f"serving version {serving}; version {latest} is backfilling"
    elif ready:
        message = f"serving version {serving}"
    else:
        message = f"version {latest} is backfilling; nothing to serve yet"
    found.insert(0, Condition("Ready", ready, "Serving" if ready else "Backfilling", message))
    notices = _watch(
        ctx,
        view,
        status_before,
        status,
        found,
        [c for v in sorted(completed) for c in completed[v]],
        [(r, o) for r, o in completed.get(serving or 0, []) if r.completed],
        materializes=materializes,
        serving_record=records.get(serving or 0),
        first_start=start,
        now=now,
    )
    return _finish(body, status, found, now, notices)


def _watch(
    ctx: Context,
    view: v1alpha1.FeatureView,
    before: Mapping[str, Any],
    status: dict[str, Any],
    found: list[Condition],
    completed: Sequence[tuple[runs.Run, runs.Outcome]],
    serving_completed: Sequence[tuple[runs.Run, runs.Outcome]],
    *,
    materializes: bool,
    serving_record: progress.Progress | None,
    first_start: dt.datetime,
    now: dt.datetime,
) -> list[monitoring.Notice]:
    """The view's health into its status, conditions and metrics (see
    :mod:`.monitoring`); returns the events deserved by the windows newly seen to end
    (``completed``; ``serving_completed``: those of the serving version that completed)."""
    namespace, name = view.metadata.namespace or "default", view.metadata.name
    watched = monitoring.watch_view(
        view.spec,
        before,
        serving_completed,
        materializes=materializes,
        materialized_until=serving_record.materialized_until if serving_record else None,
        first_start=first_start,
        now=now,
    )
    status.update(watched.status)
    found.extend(watched.conditions)
    metrics = ctx.metrics
    metrics.freshness_objective.set_view(
        namespace,
        name,
        {(): watched.objective.total_seconds()} if watched.objective is not None else {},
    )
    metrics.expectation_violation_rows.set_view(
        namespace,
        name,
        {
            (str(r["feature"]), str(r["check"]), str(r["onViolation"])): float(r["rows"])
            for r in watched.expectations
        },
    )
    metrics.feature_drift_psi.set_view(
        namespace, name, {(str(d["feature"]),): float(d["psi"]) for d in watched.drift}
    )
    drift = view.spec.monitoring.drift
    metrics.feature_drift_threshold.set_view(
        namespace, name, {(): drift.threshold} if drift is not None else {}
    )
    notices: list[monitoring.Notice] = []
    for run, outcome in completed:
        key = f"{namespace}/{run.name}/{run.run_id}/{run.attempt}/checked"
        if not outcome.violations or not metrics.count_run_once(key):
            continue
        for violation in outcome.violations:
            metrics.expectation_violating_windows.labels(
                namespace,
                name,
                str(violation.get("feature")),
                str(violation.get("check")),
                str(violation.get("onViolation")),
            ).inc()
        notices.extend(
            monitoring.violation_notices((run.window.start, run.window.end), outcome.violations)
        )
    return notices


def _retire(
    ctx: Context,
    view: v1alpha1.FeatureView,
    versions: Mapping[int, str],
    in_use: set[int],
    before: Sequence[retention.Retired],
    now: dt.datetime,
    *,
    may_delete: bool,
) -> retention.Retention:
    """Record the versions nothing uses, and delete the data of those retired for longer
    than the retention period when the view's deletionPolicy is Delete."""
    spec = view.spec
    namespace, name = view.metadata.namespace or "default", view.metadata.name
    period = (
        v1alpha1.parse_duration(spec.version_retention)
        if spec.version_retention
        else dt.timedelta(seconds=ctx.settings.version_retention_seconds)
    )
    decision = retention.decide(
        versions,
        in_use,
        before,
        now=now,
        period=period,
        # A service not seen might use any version: record, delete nothing.
        delete=spec.deletion_policy == "Delete" and may_delete,
    )
    for version in decision.delete:
        ctx.tables.delete(naming.online_table(ctx.settings, namespace, name, version))
        ctx.offline.delete(naming.offline_uri(ctx.settings, namespace, name, version))
    return decision


def _degraded(
    exhausted: list[str], failures: list[str], next_retry: dt.datetime | None, request_error: str
) -> Condition:
    """Degraded, with the most pressing reason first: windows that stopped retrying,
    a backfill request that cannot be read, then windows waiting for a retry."""
    problems = [*exhausted, *([request_error] if request_error else []), *failures]
    if not problems:
        return Condition("Degraded", False, "Healthy", "no failed windows")
    retry = f"; next retry at {next_retry:%Y-%m-%dT%H:%M:%SZ}" if next_retry and failures else ""
    reason = (
        "TooManyFailures" if exhausted else "InvalidBackfill" if request_error else "WindowFailed"
    )
    return Condition("Degraded", True, reason, "; ".join(problems) + retry)


def _stuck_runs(
    ctx: Context, namespace: str, name: str, apps: Sequence[runs.Run], degraded: Condition
) -> Condition:
    """``degraded``, or, when it finds nothing wrong while a run's pod cannot start
    (image missing, crash loop, unschedulable), Degraded with that pod's reason."""
    if degraded.status or all(a.finished for a in apps):
        return degraded
    stuck = pods.find_problems(ctx.kube.find("v1", "Pod", namespace, {LABEL: name}))
    if not stuck:
        return degraded
    reason, message = pods.summarize(stuck)
    return Condition("Degraded", True, reason, f"a window's pod cannot start: {message}")


def _driver(ctx: Context, namespace: str, run: runs.Run) -> Mapping[str, Any] | None:
    """The pod of a finished run whose termination message is its report: a
    SparkApplication's driver, or a Job's pod."""
    if run.kind == JOB_API[1]:
        return runs.job_pod(ctx.kube.find("v1", "Pod", namespace, {JOB_UID_LABEL: run.uid}))
    return ctx.kube.get("v1", "Pod", namespace, run.driver_pod) if run.driver_pod else None


def _start(
    ctx: Context,
    view: v1alpha1.FeatureView,
    version: int,
    decision: progress.Decision,
    apps: Sequence[runs.Run],
    owner: Mapping[str, Any],
    access: credentials.Credentials,
) -> set[str]:
    """Create the SparkApplications or Jobs of the attempts ``decision`` starts, each
    replacing any other of the same name (an earlier attempt, another run of the window,
    of either kind), each window recorded as pending in the online table first (the
    job takes the record over, and its settle time passes while the pod starts);
    returns their names."""
    names = set()
    namespace = view.metadata.namespace or "default"
    by_name: dict[str, list[runs.Run]] = {}
    for app in apps:
        by_name.setdefault(app.name, []).append(app)
    for attempt in decision.start:
        kind = engines.choose_kind(
            view,
            attempt.window,
            decision.progress.last,
            python_max_rows=ctx.settings.python_max_rows,
            attempt=attempt.attempt,
        )
        app_name = naming.run_name(view.metadata.name, version, attempt.window)
        names.add(app_name)
        there = by_name.get(app_name, [])
        if any(
            (a.kind, a.window, a.run_id, a.attempt)
            == (kind, attempt.window, attempt.run, attempt.attempt)
            for a in there
        ):
            continue
        pending = None
        if view.spec.materialization.online:
            table = naming.online_table(ctx.settings, namespace, view.metadata.name, version)
            pending = ctx.tables.open_window(table, view, attempt.window.start, attempt.window.end)
        render = (
            desired.render_materialize_job
            if kind == engines.JOB
            else desired.render_spark_application
        )
        body = render(
            view,
            version,
            attempt.window,
            ctx.settings,
            owner,
            attempt.attempt,
            attempt.run,
            access=access,
            pending=pending,
        )
        for other in there:
            ctx.kube.delete(*RUN_APIS[other.kind], namespace, app_name)
        ctx.kube.create(body)
    return names


def _last_window_rows(
    last: progress.WindowRecord | None,
    before: Mapping[str, Any],
    status: Mapping[str, Any],
) -> dict[str, Any] | None:
    """The rows the last materialized window wrote, and the engine that computed it,
    as its driver reported them.

    They are recorded with the window when its run is seen to complete; while the
    status already holds the rows of the same window of the same version, they are kept.
    """
    if last is not None:
        if not last.rows:
            return None
        return {**last.rows, **({"engine": last.engine} if last.engine else {})}
    same = all(before.get(k) == status.get(k) for k in ("version", "lastMaterializedWindow"))
    return dict(before["rows"]) if same and before.get("rows") else None


def _count(
    ctx: Context,
    namespace: str,
    name: str,
    seen: progress.Observation,
    outcomes: Mapping[str, runs.Outcome],
) -> None:
    for run in seen.succeeded:
        if ctx.metrics.count_run_once(f"{namespace}/{run.name}/{run.run_id}/{run.attempt}/ok"):
            outcome = outcomes.get(run.name)
            engine = (outcome.engine if outcome else None) or "unknown"
            ctx.metrics.windows_succeeded.labels(namespace, name, engine).inc()
    for run in seen.failed:
        if ctx.metrics.count_run_once(f"{namespace}/{run.name}/{run.run_id}/{run.attempt}/failed"):
            ctx.metrics.windows_failed.labels(namespace, name).inc()


def finalize_feature_view(ctx: Context, body: Mapping[str, Any]) -> None:
    """On deletion: delete the online tables if the view's deletionPolicy says so."""
    meta = body["metadata"]
    namespace, name = meta.get("namespace") or "default", meta["name"]
    if namespace in ctx.settings.excluded:
        return  # nothing was made there
    ctx.metrics.freshness.forget(namespace, name)
    for gauges in ctx.metrics.view_gauges:
        gauges.forget(namespace, name)
    if (body.get("spec") or {}).get("deletionPolicy", "Retain") != "Delete":
        return
    for version in _versions(ctx, namespace, name):
        ctx.tables.delete(naming.online_table(ctx.settings, namespace, name, version))


# -- FeatureService -------------------------------------------------------------------


def _condition_true(body: Mapping[str, Any], kind: str) -> bool:
    return any(
        c.get("type") == kind and c.get("status") == "True"
        for c in (body.get("status") or {}).get("conditions") or ()
    )


def _at_version(
    ctx: Context, view: v1alpha1.FeatureView, version: int
) -> v1alpha1.FeatureView | None:
    """``view`` as its ``version`` runs: that version's data fields (features, types,
    entities) from its snapshot, the view's other fields (ttl) as they are now. None
    without a snapshot of that version."""
    namespace = view.metadata.namespace or "default"
    snapshot = ctx.kube.get(
        "v1", "ConfigMap", namespace, naming.snapshot_name(view.metadata.name, version)
    )
    frozen = jobspec.read_snapshot_spec(snapshot) if snapshot else None
    if frozen is None:
        return None
    return view.model_copy(update={"spec": jobspec.resolve_version_spec(frozen, view.spec)})


def _as_served(ctx: Context, view: v1alpha1.FeatureView, version: int) -> v1alpha1.FeatureView:
    """``view`` as its serving ``version`` runs; without a snapshot (a view not
    reconciled yet), the view as it is."""
    return _at_version(ctx, view, version) or view


def _resolve_pinned(
    ctx: Context,
    ref: v1alpha1.FeatureViewReference,
    view: v1alpha1.FeatureView,
    view_status: Mapping[str, Any],
    where: str,
) -> tuple[v1alpha1.FeatureView | None, list[str], tuple[str, str] | None, str | None]:
    """A reference that pins a version: the view as that version has it, the features
    taken, the problem that stops the service, and what it waits for."""
    assert ref.version is not None
    pinned = _at_version(ctx, view, ref.version)
    if pinned is None:
        have = sorted(_versions(ctx, view.metadata.namespace or "default", view.metadata.name))
        return (
            None,
            [],
            (
                "VersionNotFound",
                f"{where} has no version {ref.version} (its versions: "
                f"{', '.join(map(str, have)) or 'none yet'}): pin one of them, or remove "
                "spec.features[].version to serve the version the view serves",
            ),
            None,
        )
    names = list(ref.features or pinned.spec.feature_names)
    unknown = [f for f in names if f not in pinned.spec.feature_types()]
    if unknown:
        return (
            None,
            [],
            (
                "UnknownFeature",
                f"{where} version {ref.version} has no feature {', '.join(unknown)}",
            ),
            None,
        )
    serving = set(view_status.get("servingVersions") or ()) | {view_status.get("version")}
    waiting = None
    if ref.version not in serving:
        waiting = (
            f"{view.metadata.namespace or 'default'}/{view.metadata.name} version "
            f"{ref.version} (pinned; not serving yet, backfilling)"
        )
    return pinned, names, None, waiting


def reconcile_feature_service(ctx: Context, body: Mapping[str, Any]) -> Outcome:
    """Resolve a service's views, run its feature server, and return its status."""
    now = ctx.clock()
    if (unmanaged := _unmanaged(ctx, body, now)) is not None:
        return unmanaged
    try:
        service = v1alpha1.FeatureService.model_validate(body)
    except pydantic.ValidationError as exc:
        return _invalid(body, exc, now)
    refused = admission.check_object(body)
    if refused:
        return _refuse(body, admission.describe(refused), now)
    namespace, name = service.metadata.namespace or "default", service.metadata.name
    account = service.spec.server.service_account_name or ctx.settings.server_service_account
    access = _credentials(ctx, namespace, account)
    if access is None:
        return _no_credentials(ctx, body, account, now)
    problems: list[tuple[str, str]] = []
    withdrawn: list[str] = []  # views of other namespaces this service may not read now
    waiting: list[str] = []
    resolved: list[desired.ResolvedView] = []
    served: list[dict[str, Any]] = []
    for ref in service.spec.features:
        view_ns = ref.namespace or namespace
        where = f"FeatureView {view_ns}/{ref.feature_view}"
        view_body = ctx.kube.get_feature_view(view_ns, ref.feature_view)
        if view_ns != namespace and view_body and view_body["metadata"].get("deletionTimestamp"):
            view_body = None  # another team's view on its way out: no longer shared
        if view_body is None:
            problems.append(("FeatureViewNotFound", f"{where} does not exist"))
            if view_ns != namespace:
                withdrawn.append(where)
            continue
        try:
            view = v1alpha1.FeatureView.model_validate(view_body)
        except pydantic.ValidationError:
            problems.append(("FeatureViewInvalid", f"{where} has an invalid spec"))
            continue
        if not sharing.may_read(view, namespace):
            problems.append(
                (
                    sharing.NOT_SHARED,
                    f"{where} is not shared with namespace {namespace}: add {namespace} to "
                    "its spec.sharedWith",
                )
            )
            withdrawn.append(where)
            continue
        view_status = view_body.get("status") or {}
        if ref.version is not None:
            # A pinned version: its own table, features and types, whatever serves.
            version = ref.version
            found_view, names, problem, wait = _resolve_pinned(ctx, ref, view, view_status, where)
            if problem is not None or found_view is None:
                problems.append(problem or ("VersionNotFound", where))
                continue
            view = found_view
            if wait:
                waiting.append(wait)
        else:
            names = list(ref.features or view.spec.feature_names)
            unknown = [f for f in names if f not in view.spec.feature_types()]
            if unknown:
                problems.append(("UnknownFeature", f"{where} has no feature {', '.join(unknown)}"))
                continue
            version = view_status.get("version") or view_status.get("latestVersion") or 1
            # Serve the serving version's own features and types, never the live spec's.
            view = _as_served(ctx, view, version)
            names = list(ref.features or view.spec.feature_names)
            coming = [f for f in names if f not in view.spec.feature_types()]
            if coming:
                # Served meanwhile: the features the serving version has.
                names = [f for f in names if f not in coming]
                waiting.append(
                    f"{view_ns}/{ref.feature_view} (feature {', '.join(coming)} arrives with "
                    f"a version after {version}, still backfilling)"
                )
            elif not _condition_true(view_body, "Ready"):
                waiting.append(f"{view_ns}/{ref.feature_view}")
        served.append({"featureView": ref.feature_view, "namespace": view_ns, "version": version})
        resolved.append(
            desired.ResolvedView(
                view=view,
                online_table=naming.online_table(
                    ctx.settings, view_ns, view.metadata.name, version
                ),
                features=names,
                prefix=ref.prefix or "",
                offline_uri=(
                    naming.offline_uri(ctx.settings, view_ns, view.metadata.name, version)
                    if view.spec.materialization.offline
                    else None
                ),
            )
        )
    status: dict[str, Any] = {
        "endpoint": f"{name}.{namespace}.svc:{service.spec.server.port}",
    }
    found: list[Condition] = []
    if problems:
        reason, _ = problems[0]
        message = "; ".join(m for _, m in problems)
        if not withdrawn:
            # The last plan that resolved goes on serving until the spec is fixed.
            found.append(Condition("Ready", False, reason, message))
            return _finish(body, status, found, now)
        # Another namespace's view not shared (any more), or gone, leaves the plan now,
        # with what reads it.
        service, dropped = sharing.served_transformations(service, resolved)
        message += f"; {', '.join(withdrawn)} no longer served" + (
            f", nor the transformations {', '.join(dropped)} that read it" if dropped else ""
        )
        found.append(Condition("Ready", False, reason, message))
        status["servedVersions"] = served
        if not resolved:
            ctx.kube.delete("apps/v1", "Deployment", namespace, name)
            ctx.kube.delete("v1", "ConfigMap", namespace, desired.plan_configmap_name(name))
            ctx.kube.delete("networking.k8s.io/v1", "NetworkPolicy", namespace, name)
            return _finish(body, status, found, now)

    checked = ctx.settings.parity_enabled and service.spec.monitoring.parity.enabled
    monitors = [ctx.settings.parity_reader] if checked and ctx.settings.parity_reader else []
    plan = desired.render_serving_plan(service, resolved, monitors)
    # Written with the plan that reads them: their data is kept while it does.
    status["servedVersions"] = served
    features = [f for v in plan["featureViews"] for f in v["features"]]
    status["featureCount"] = len(features) + len(plan["transformations"])
    status["resolvedFeatures"] = [
        {
            "name": f["name"],
            "type": f["type"],
            "featureView": v["name"],
            "namespace": v["namespace"],
        }
        for v in plan["featureViews"]
        for f in v["features"]
    ] + [{"name": t["name"], "type": t["type"]} for t in plan["transformations"]]
    ctx.kube.apply(desired.render_plan_configmap(service, plan, body))
    # The NetworkPolicy first: no pod of a new plan is reachable by more than it allows.
    ctx.kube.apply(
        serving_security.render_network_policy(
            service, plan, body, ctx.settings.metrics_namespace_list
        )
    )
    deployment = desired.render_deployment(service, plan, ctx.settings, body, access)
    tls_secret = ctx.settings.server_tls_secret or None
    ctx.kube.apply(
        serving_security.secure_deployment(deployment, tls_secret, ctx.settings.server_auth)
    )
    ctx.kube.apply(desired.render_service(service, body))
    for kind, api_version, rendered in (
        ("HorizontalPodAutoscaler", "autoscaling/v2", desired.render_hpa(service, body)),
        ("PodDisruptionBudget", "policy/v1", desired.render_pdb(service, body)),
    ):
        if rendered is None:
            ctx.kube.delete(api_version, kind, namespace, name)
        else:
            ctx.kube.apply(rendered)

    if found:  # not Ready already: a view is not shared
        return _finish(body, status, found, now)
    deployment = ctx.kube.get("apps/v1", "Deployment", namespace, name) or {}
    available = int((deployment.get("status") or {}).get("availableReplicas") or 0)
    if waiting:
        found.append(
            Condition("Ready", False, "FeatureViewsNotReady", f"waiting for {', '.join(waiting)}")
        )
    else:
        # Pods that cannot start (image missing, crash loop) say why, not a silent wait.
        # Only a rollout in progress can have them: a settled one lists no pods.
        stuck = (
            []
            if pods.rolled_out(deployment)
            else pods.find_problems(
                ctx.kube.find("v1", "Pod", namespace, {naming.LABEL_FEATURE_SERVICE: name})
            )
        )
        found.append(_serving(available, pods.summarize(stuck) if stuck else None))
    return _finish(body, status, found, now)


def _serving(available: int, stuck: tuple[str, str] | None) -> Condition:
    """A service's Ready condition from its server's available pods and, when some
    cannot start, the first one's reason and a message naming them."""
    if available < 1 and stuck is not None:
        return Condition("Ready", False, stuck[0], f"the feature server cannot start: {stuck[1]}")
    if available < 1:
        return Condition(
            "Ready", False, "ServerUnavailable", "the feature server has no available pod"
        )
    message = f"{available} feature server pod(s) serving"
    if stuck is not None:
        message += f"; new pods cannot start: {stuck[1]}"
    return Condition("Ready", True, "Serving", message)
