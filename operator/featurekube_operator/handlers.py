"""kopf handlers: the only module that imports kopf. Each handler is a few lines: it
hands the body to :mod:`.reconcile` and writes back what comes out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, cast

import kopf
from botocore.exceptions import BotoCoreError, ClientError
from kubernetes.client.exceptions import ApiException

from featurekube import backfills, errors
from featurekube.spec import v1alpha1
from featurekube_operator import admission, naming, parity, reconcile, runs, sharing
from featurekube_operator.dynamo import OnlineTables
from featurekube_operator.kube import Kube
from featurekube_operator.metrics import Metrics
from featurekube_operator.settings import OperatorSettings

GROUP, VERSION = v1alpha1.GROUP, v1alpha1.VERSION
# Decorators are evaluated at import, so the timer's interval is read here.
INTERVAL = OperatorSettings.from_env().reconcile_interval_seconds
PARITY_TICK = OperatorSettings.from_env().parity_tick_seconds
RETRY_DELAY = 15.0
BACKFILL = backfills.ANNOTATION
BAD_WHEN_TRUE = frozenset({"Degraded", "Drifted"})
"""Conditions whose True is bad news (a Warning event); for the others, False is."""


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod, its service account; elsewhere, the KUBECONFIG of the moment (kopf's
    default goes through the kubernetes client, which reads KUBECONFIG at import)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Keep kopf's bookkeeping under our own domain, and build the reconcile context."""
    settings.persistence.finalizer = "featurekube.dev/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix="featurekube.dev"
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="featurekube.dev"
    )
    # kopf's own per-handler events only for problems; ours say what changed and why.
    settings.posting.level = logging.WARNING
    operator_settings = OperatorSettings.from_env()
    context = reconcile.Context(
        settings=operator_settings,
        kube=Kube.from_environment(),
        tables=OnlineTables(),
        metrics=Metrics(),
    )
    if operator_settings.metrics_port:
        context.metrics.serve(operator_settings.metrics_port)
    # kopf refuses to run validating handlers without a server: off, one that never
    # listens stands in.
    settings.admission.server = (
        _webhook_server(operator_settings) if operator_settings.admission_port else _no_webhook
    )
    memo["context"] = context
    # One runner for every service: its threads bound the checks running at once.
    memo["parity"] = parity.ParityRunner(
        parity.ParityCheck(operator_settings, context.kube), operator_settings.parity_max_concurrent
    )


async def _no_webhook(_: Any) -> AsyncIterator[Any]:
    """The admission server when the webhook is off: it never listens."""
    await asyncio.Event().wait()
    yield  # pragma: no cover  (never reached; makes this an async generator)


def _webhook_server(settings: OperatorSettings) -> kopf.WebhookServer:
    """kopf's HTTPS server for the admission webhook, on every interface, with the
    certificate the ValidatingWebhookConfiguration's CA signed; the configuration is
    the installer's (the chart, the local platform), so the operator needs no
    permission on webhook configurations."""
    certs = Path(settings.admission_cert_dir)
    missing = [f for f in ("tls.crt", "tls.key") if not (certs / f).is_file()]
    if missing:
        raise kopf.PermanentError(
            f"the admission webhook needs {' and '.join(missing)} in "
            f"{certs} (FEATUREKUBE_ADMISSION_CERT_DIR): mount the webhook's TLS Secret "
            "there, or set FEATUREKUBE_ADMISSION_PORT=0"
        )
    return kopf.WebhookServer(
        addr=None,
        port=settings.admission_port,
        certfile=certs / "tls.crt",
        pkeyfile=certs / "tls.key",
    )


@kopf.on.validate(GROUP, VERSION, "featureviews", id=admission.WEBHOOKS["featureviews"])
@kopf.on.validate(GROUP, VERSION, "featureservices", id=admission.WEBHOOKS["featureservices"])
def refuse_what_validate_refuses(body: kopf.Body, **_: Any) -> None:
    """At ``kubectl apply``: refuse what ``featurekube validate`` refuses in the object
    alone (SQL outside the allowlist, expressions, reserved names), naming each field.
    The operator checks again before it acts (InvalidSpec), in case this did not run."""
    refused = admission.check_object(body)
    if refused:
        raise kopf.AdmissionError(admission.describe(refused, limit=5), code=422)


Step = Callable[[reconcile.Context, Mapping[str, Any]], reconcile.Outcome]


def _step(kind: str, step: Step, body: Mapping[str, Any], memo: kopf.Memo) -> reconcile.Outcome:
    context: reconcile.Context = memo["context"]
    context.metrics.reconciles.labels(kind).inc()
    try:
        return step(context, body)
    except (ApiException, ClientError, BotoCoreError) as exc:
        context.metrics.reconcile_errors.labels(kind).inc()
        # A store or the API is unreachable: nothing is wrong with the spec, try again.
        raise kopf.TemporaryError(f"{type(exc).__name__}: {exc}", delay=RETRY_DELAY) from exc
    except Exception:
        context.metrics.reconcile_errors.labels(kind).inc()
        raise


def _post_events(
    body: Mapping[str, Any], outcome: reconcile.Outcome, memo: kopf.Memo | None = None
) -> None:
    # Bodies read through the API client are plain dicts; kopf wants its own wrapper.
    target = body if isinstance(body, kopf.Body) else kopf.Body(cast(kopf.RawBody, dict(body)))
    for condition in outcome.events:
        bad = (condition["type"] in BAD_WHEN_TRUE) == (condition["status"] == "True")
        kopf.event(
            target,
            type="Warning" if bad else "Normal",
            reason=condition["reason"],
            message=f"{condition['type']}={condition['status']}: {condition['message']}",
        )
    context: reconcile.Context | None = memo.get("context") if memo is not None else None
    uid = body["metadata"].get("uid") or ""
    for notice in outcome.notices:
        # Two reconciles of one object at once (a timer and a change) find the same news.
        if context and not context.metrics.count_run_once(
            f"{uid}/{notice.reason}/{notice.message}"
        ):
            continue
        kopf.event(target, type=notice.type, reason=notice.reason, message=notice.message)


def _run(kind: str, step: Step, body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo) -> None:
    outcome = _step(kind, step, body, memo)
    patch.status.update(outcome.status)
    # The labels mirrored from the object's tags.
    for part, changes in outcome.metadata.items():
        patch.metadata.setdefault(part, {}).update(changes)
    _post_events(body, outcome, memo)


def _reconcile_now(
    kind: str, step: Step, body: Mapping[str, Any], memo: kopf.Memo
) -> reconcile.Outcome:
    """Reconcile an object other than the one whose event arrived, writing its status."""
    context: reconcile.Context = memo["context"]
    outcome = _step(kind, step, body, memo)
    meta = body["metadata"]
    context.kube.patch_status(
        v1alpha1.API_VERSION, kind, meta.get("namespace") or "default", meta["name"], outcome.status
    )
    if outcome.metadata:
        context.kube.patch_metadata(
            v1alpha1.API_VERSION,
            kind,
            meta.get("namespace") or "default",
            meta["name"],
            outcome.metadata,
        )
    _post_events(body, outcome, memo)
    return outcome


@kopf.on.event(
    "sparkoperator.k8s.io",
    "v1beta2",
    "sparkapplications",
    labels={naming.LABEL_FEATURE_VIEW: kopf.PRESENT},
)
def spark_application_changed(
    body: kopf.Body, event: kopf.RawEvent, memo: kopf.Memo, **_: Any
) -> None:
    """A window's job finished: move its view on now, not at the next timer tick."""
    state = ((body.get("status") or {}).get("applicationState") or {}).get("state")
    if event["type"] != "MODIFIED" or state not in runs.COMPLETED | runs.FAILED:
        return
    _run_finished(body, memo)


@kopf.on.event("batch", "v1", "jobs", labels={naming.LABEL_FEATURE_VIEW: kopf.PRESENT})
def job_changed(body: kopf.Body, event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """A window's python job finished: move its view on now, not at the next timer tick."""
    final = {
        c.get("type")
        for c in (body.get("status") or {}).get("conditions") or ()
        if c.get("status") == "True"
    } & {"Complete", "Failed"}
    if event["type"] != "MODIFIED" or not final:
        return
    _run_finished(body, memo)


def _run_finished(body: kopf.Body, memo: kopf.Memo) -> None:
    context: reconcile.Context = memo["context"]
    namespace = body.metadata.namespace or "default"
    view = context.kube.get_feature_view(namespace, body.metadata.labels[naming.LABEL_FEATURE_VIEW])
    if view is not None and not view["metadata"].get("deletionTimestamp"):
        # Services notice the view's readiness on their own timer: following up on each
        # view would reconcile a service once per view during a mass roll-out.
        _reconcile_now("FeatureView", reconcile.reconcile_feature_view, view, memo)


@kopf.on.event("apps", "v1", "deployments", labels={naming.LABEL_FEATURE_SERVICE: kopf.PRESENT})
def deployment_changed(body: kopf.Body, event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """A feature server's availability changed: update its service's readiness now."""
    if event["type"] != "MODIFIED":
        return
    context: reconcile.Context = memo["context"]
    namespace = body.metadata.namespace or "default"
    service = context.kube.get(
        v1alpha1.API_VERSION,
        "FeatureService",
        namespace,
        body.metadata.labels[naming.LABEL_FEATURE_SERVICE],
    )
    if service is not None and not service["metadata"].get("deletionTimestamp"):
        _reconcile_now("FeatureService", reconcile.reconcile_feature_service, service, memo)


@kopf.on.resume(GROUP, VERSION, "featureviews")
@kopf.on.create(GROUP, VERSION, "featureviews")
@kopf.on.update(GROUP, VERSION, "featureviews", field="spec")
@kopf.timer(GROUP, VERSION, "featureviews", interval=INTERVAL, sharp=False)
def feature_view(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Reconcile a FeatureView: table, jobs, status."""
    _run("FeatureView", reconcile.reconcile_feature_view, body, patch, memo)


@kopf.on.update(GROUP, VERSION, "featureviews", field=("metadata", "annotations", BACKFILL))
def feature_view_backfill(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """A backfill was asked for: start its windows now, not at the next timer tick."""
    _run("FeatureView", reconcile.reconcile_feature_view, body, patch, memo)


@kopf.index(GROUP, VERSION, "featureservices")
def consumers(
    namespace: str | None, name: str | None, spec: kopf.Spec, **_: Any
) -> dict[sharing.ViewKey, sharing.ViewKey]:
    """Which FeatureServices reference each view: (namespace, view) -> (namespace,
    service), kept by kopf from the watch, so a view's change finds its readers
    without listing every service."""
    return sharing.references(namespace or "default", name or "", spec)


@kopf.on.update(GROUP, VERSION, "featureviews", field=("spec", "sharedWith"))
def feature_view_shares_changed(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """The view's sharedWith changed: the services that read it follow now, so that a
    revoked share stops being served within this reconcile, not at their next tick."""
    _reconcile_consumers(body, memo, kwargs["consumers"])  # kopf passes indexes by name


def _reconcile_consumers(
    body: kopf.Body, memo: kopf.Memo, consumers: Mapping[sharing.ViewKey, Any]
) -> None:
    context: reconcile.Context = memo["context"]
    key = (body.metadata.namespace or "default", body.metadata.name or "")
    for namespace, name in sorted(set(consumers.get(key, ()))):
        service = context.kube.get(v1alpha1.API_VERSION, "FeatureService", namespace, name)
        if service is not None and not service["metadata"].get("deletionTimestamp"):
            _reconcile_now("FeatureService", reconcile.reconcile_feature_service, service, memo)


@kopf.on.delete(GROUP, VERSION, "featureviews")
def feature_view_deleted(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """Honour spec.deletionPolicy for the online tables; owned objects go with the view.
    Services of other namespaces stop reading it now."""
    reconcile.finalize_feature_view(memo["context"], body)
    _reconcile_consumers(body, memo, kwargs["consumers"])


@kopf.on.resume(GROUP, VERSION, "featureservices")
@kopf.on.create(GROUP, VERSION, "featureservices")
@kopf.on.update(GROUP, VERSION, "featureservices", field="spec")
@kopf.timer(GROUP, VERSION, "featureservices", interval=INTERVAL, sharp=False)
def feature_service(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Reconcile a FeatureService: serving plan, server Deployment, status."""
    _run("FeatureService", reconcile.reconcile_feature_service, body, patch, memo)


@kopf.timer(GROUP, VERSION, "featureservices", id="parity", interval=PARITY_TICK, sharp=False)
async def feature_service_parity(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any
) -> None:
    """When the service's parity check is due, compare served values with the offline
    store (in a thread: see :mod:`.parity`), and report what differed."""
    context: reconcile.Context = memo["context"]
    runner: parity.ParityRunner | None = memo.get("parity")
    if runner is None or not context.settings.parity_enabled:
        return
    if not parity.is_due(body, context.clock(), memo.get("parity_failed_at")):
        return
    namespace, name = body.metadata.namespace or "default", body.metadata.name or ""
    try:
        result = await runner.run(body)
    except (errors.FeaturekubeError, ApiException, ClientError, BotoCoreError, OSError) as exc:
        # Tried again an interval later (this object's memo remembers when).
        memo["parity_failed_at"] = context.clock()
        kopf.event(body, type="Warning", reason="ParityCheckFailed", message=str(exc)[:1024])
        return
    status = result.status
    patch.status["parity"] = status
    metrics = context.metrics
    metrics.parity_mismatch_rate.labels(namespace, name).set(status["mismatchRate"])
    metrics.parity_values.labels(namespace, name).inc(status["values"])
    metrics.parity_mismatches.labels(namespace, name).inc(status["mismatches"])
    for reason, count in result.skipped_by.items():
        metrics.parity_skipped.labels(namespace, name, reason).inc(count)
    if status["mismatches"]:
        first = (status.get("examples") or [{}])[0]
        kopf.event(
            body,
            type="Warning",
            reason="ParityMismatch",
            message=(
                f"{status['mismatches']} of {status['values']} served values differ from the "
                f"offline store, e.g. {first.get('feature')} of {first.get('entity')}: served "
                f"{first.get('online', 'null')}, offline {first.get('offline', 'null')}"
            )[:1024],
        )
