"""The parity check of a FeatureService: served values against a point-in-time pull of
the offline store; does I/O (the API server, DynamoDB, S3 and the feature server).

One check, for the views of the service's serving plan (the ConfigMap its servers
read) that keep offline history, grouped by their join keys:

1. note each view's offline table version and the windows its online table records
   as pending;
2. sample up to ``spec.monitoring.parity.sampleSize`` entities (split over the groups)
   from a random Scan segment of their online tables, and read their items' times;
3. ask the feature server for their values over its gRPC API, as a client does (TLS
   and the operator's ServiceAccount token, as the chart configures servers);
4. pull the same entities from the offline tables of the versions served
   (``status.servedVersions``), by the SDK's DuckDB join, at the moment the server
   answered;
5. read the items' times, the table versions and the pending windows again.

The decisions — which entities a race may have touched, whether two values are equal,
the status written — are :mod:`featurekube.parity`'s. A group in which a view's
offline table or pending windows moved, and some value differed, is checked once
more with a fresh sample; values that differ in it again while something moves are
left out (``moved``), never reported. Request-time transformations are not compared:
they are the same expressions evaluated by the same code over the compared values.

The online client needs grpcio (the ``server`` extra); it is imported when a check
first runs.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures as concurrent_futures
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
import pyarrow as pa
import yaml

from featurekube import errors, s3_prefixes
from featurekube import parity as decide
from featurekube.joins import plan as joins
from featurekube.online import layout, windows
from featurekube.spec import v1alpha1
from featurekube_operator import desired, jobspec, naming
from featurekube_operator.kube import Kube
from featurekube_operator.settings import OperatorSettings

if TYPE_CHECKING:
    from featurekube.online.client import OnlineClient

__all__ = ["CheckResult", "ParityCheck", "ParityRunner", "ServedView", "is_due"]

logger = logging.getLogger(__name__)

_SCAN_PAGES = 8
"""Scan pages read at most per table and check: the sample's bound on read units."""
_BATCH_GET = 100
"""Keys one BatchGetItem takes, DynamoDB's own limit."""
_STAMP_ATTRIBUTES = (
    layout.ENTITY_KEY,
    layout.EVENT_TIME,
    layout.CREATED_TIME,
    layout.LATEST_EVENT_TIME,
)
_TIMESTAMP = "event_timestamp"
_MICROS = 1_000_000


@dataclass(frozen=True)
class ServedView:
    """A view the service's plan serves, as the check reads it."""

    view: v1alpha1.FeatureView
    """The view as the version served has it."""
    version: int
    online_table: str
    offline_table: str | None
    """Its version's Delta table; None when the view keeps no offline history."""
    keys: dict[str, str]
    """Join key -> its type."""
    features: dict[str, str]
    """The feature's name in the service -> its name in the view."""
    types: dict[str, str]
    """The feature's name in the service -> its value type."""
    prefix: str
    ttl: int | None
    """In microseconds."""

    @property
    def where(self) -> str:
        return f"FeatureView {self.view.metadata.namespace or 'default'}/{self.view.metadata.name}"


@dataclass
class CheckResult:
    """What one check found."""

    status: dict[str, Any]
    """``status.parity``."""
    skipped: int
    """Entities sampled but left out (a race could make their values differ)."""
    comparison: decide.Comparison = field(default_factory=decide.Comparison)
    skipped_by: dict[str, int] = field(default_factory=dict)
    """Skipped entities by reason (changed, pending, recent, ttl, moved)."""


def is_due(body: Mapping[str, Any], now: dt.datetime, tried: dt.datetime | None = None) -> bool:
    """Whether the service's parity check is enabled and due at ``now``, the last one
    having run at ``status.parity.checkedAt``, or failed at ``tried``; pure."""
    spec = ((body.get("spec") or {}).get("monitoring") or {}).get("parity") or {}
    parity = v1alpha1.ParitySpec.model_validate(spec)
    if not parity.enabled:
        return False
    meta = body.get("metadata") or {}
    last = ((body.get("status") or {}).get("parity") or {}).get("checkedAt")
    created = meta.get("creationTimestamp")
    interval = dt.timedelta(seconds=v1alpha1.parse_duration(parity.interval).total_seconds())
    previous = [t for t in (_parse_time(last) if last else None, tried) if t is not None]
    due = decide.due_at(
        max(previous) if previous else None,
        _parse_time(created) if created else now,
        interval,
        f"{meta.get('namespace') or 'default'}/{meta.get('name')}",
    )
    return now >= due


def _parse_time(text: str | dt.datetime) -> dt.datetime:
    if isinstance(text, dt.datetime):
        moment = text
    else:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _micros(moment: dt.datetime) -> int:
    return int(moment.timestamp() * _MICROS)


class ParityCheck:
    """Runs parity checks through the given API server, DynamoDB and clients.

    ``connect(endpoint)`` makes the online client of a service's ``status.endpoint``;
    by default one with the operator's settings (TLS when the operator serves TLS,
    ``parity_ca_file``, and ``parity_token_file`` or the pod's own token).
    """

    def __init__(
        self,
        settings: OperatorSettings,
        kube: Kube,
        dynamodb: Any | None = None,
        connect: Callable[[str], OnlineClient] | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.settings = settings
        self.kube = kube
        self._dynamodb = dynamodb
        self._connect = connect or self._default_connect
        self.clock = clock

    @property
    def dynamodb(self) -> Any:
        if self._dynamodb is None:
            self._dynamodb = boto3.client("dynamodb")
        return self._dynamodb

    def _default_connect(self, endpoint: str) -> OnlineClient:
        from featurekube.online import client

        return client.OnlineClient(
            endpoint,
            timeout=30.0,
            tls=bool(self.settings.server_tls_secret),
            ca_file=self.settings.parity_ca_file or None,
            token_file=self.settings.parity_token_file or None,
        )

    # -- reading what is served -----------------------------------------------------------

    def served_views(self, service: v1alpha1.FeatureService) -> list[ServedView]:
        """The views of the service's serving plan, each as its served version has it.
        Raises :class:`~featurekube.errors.DefinitionsError` when there is no plan."""
        namespace, name = service.metadata.namespace or "default", service.metadata.name
        configmap = self.kube.get("v1", "ConfigMap", namespace, desired.plan_configmap_name(name))
        text = ((configmap or {}).get("data") or {}).get(desired.PLAN_KEY)
        if not text:
            raise errors.DefinitionsError(
                f"FeatureService {namespace}/{name} has no serving plan (ConfigMap "
                f"{namespace}/{desired.plan_configmap_name(name)}) yet: nothing is served to "
                "compare; the check runs once the service is reconciled"
            )
        document = yaml.safe_load(text) or {}
        versions = {
            (v.namespace, v.feature_view): v.version
            for v in (service.status.served_versions if service.status else None) or ()
        }
        found = []
        for entry in document.get("featureViews") or ():
            view_ns, view_name = str(entry.get("namespace") or namespace), str(entry["name"])
            table = str(entry["onlineTable"])
            version = versions.get((view_ns, view_name)) or int(table.rsplit(".v", 1)[-1])
            view = self._view_at(view_ns, view_name, version)
            if view is None:
                continue
            features = {str(f["name"]): str(f["source"]) for f in entry.get("features") or ()}
            prefixes = {n[: len(n) - len(s)] for n, s in features.items()}
            ttl = entry.get("ttl")
            found.append(
                ServedView(
                    view=view,
                    version=version,
                    online_table=table,
                    offline_table=(
                        naming.offline_uri(self.settings, view_ns, view_name, version)
                        if view.spec.materialization.offline
                        else None
                    ),
                    keys={str(e["name"]): str(e["type"]) for e in entry.get("entities") or ()},
                    features=features,
                    types={str(f["name"]): str(f["type"]) for f in entry.get("features") or ()},
                    prefix=prefixes.pop() if len(prefixes) == 1 else "",
                    ttl=(
                        int(v1alpha1.parse_duration(str(ttl)).total_seconds() * _MICROS)
                        if ttl
                        else None
                    ),
                )
            )
        return found

    def _view_at(self, namespace: str, name: str, version: int) -> v1alpha1.FeatureView | None:
        body = self.kube.get_feature_view(namespace, name)
        if body is None:
            return None
        view = v1alpha1.FeatureView.model_validate(body)
        snapshot = self.kube.get("v1", "ConfigMap", namespace, naming.snapshot_name(name, version))
        frozen = jobspec.read_snapshot_spec(snapshot) if snapshot else None
        if frozen is None:
            return view
        return view.model_copy(update={"spec": jobspec.resolve_version_spec(frozen, view.spec)})

    # -- the stores -----------------------------------------------------------------------

    def table_version(self, uri: str) -> int | None:
        """The Delta table's latest version; None when there is no table yet."""
        import deltalake

        try:
            return int(deltalake.DeltaTable(s3_prefixes.normalize(uri)).version())
        except deltalake.exceptions.TableNotFoundError:
            return None

    def pending(self, table: str) -> tuple[tuple[int, int], ...]:
        """The windows the online table records as pending."""
        answer = self.dynamodb.get_item(
            TableName=table,
            Key={layout.ENTITY_KEY: {"S": windows.WINDOWS_KEY}},
            ConsistentRead=True,
        )
        return windows.pending_ranges(answer.get("Item"))

    def scan_keys(self, table: str, wanted: int, rng: random.Random) -> list[str]:
        """Entity keys of a random Scan segment of ``table``: about ``4 * wanted`` keys
        from at most a few pages, skipping the windows item."""
        described = self.dynamodb.describe_table(TableName=table)["Table"]
        items = int(described.get("ItemCount") or 0)
        segments = max(1, min(1_000_000, items // max(1, 4 * wanted)))
        segment = rng.randrange(segments)
        keys: list[str] = []
        start: dict[str, Any] | None = None
        for _ in range(_SCAN_PAGES):
            arguments: dict[str, Any] = {
                "TableName": table,
                "Segment": segment,
                "TotalSegments": segments,
                "Limit": min(1000, 4 * wanted),
                "ProjectionExpression": "#k",
                "ExpressionAttributeNames": {"#k": layout.ENTITY_KEY},
            }
            if start:
                arguments["ExclusiveStartKey"] = start
            page = self.dynamodb.scan(**arguments)
            keys.extend(
                item[layout.ENTITY_KEY]["S"]
                for item in page.get("Items") or ()
                if not item[layout.ENTITY_KEY]["S"].startswith("#")
            )
            start = page.get("LastEvaluatedKey")
            if len(keys) >= 4 * wanted:
                break
            if not start:
                if segments == 1:
                    break
                segment, start = (segment + 1) % segments, None
        return keys

    def stamps(self, table: str, keys: Sequence[str]) -> dict[str, decide.Item]:
        """The items of ``keys`` in ``table`` (strongly consistent): their times."""
        found: dict[str, decide.Item] = {}
        names = {f"#a{i}": a for i, a in enumerate(_STAMP_ATTRIBUTES)}
        for begin in range(0, len(keys), _BATCH_GET):
            request: dict[str, Any] = {
                table: {
                    "Keys": [
                        {layout.ENTITY_KEY: {"S": k}} for k in keys[begin : begin + _BATCH_GET]
                    ],
                    "ConsistentRead": True,
                    "ProjectionExpression": ", ".join(names),
                    "ExpressionAttributeNames": names,
                }
            }
            for attempt in range(8):
                answer = self.dynamodb.batch_get_item(RequestItems=request)
                for attributes in (answer.get("Responses") or {}).get(table) or ():
                    item = decide.item_from_attributes(attributes)
                    if item is not None:
                        found[item.key] = item
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(1.0, 0.05 * 2**attempt))
            if request:
                raise errors.StoreUnavailableError(
                    f"DynamoDB left keys of table {table} unprocessed eight times running: "
                    "the parity check tries again at its next interval"
                )
        return found

    def _moment(self, views: Sequence[ServedView]) -> dict[str, tuple[int | None, tuple[Any, ...]]]:
        return {
            v.online_table: (
                self.table_version(v.offline_table) if v.offline_table else None,
                self.pending(v.online_table),
            )
            for v in views
        }

    # -- one check ------------------------------------------------------------------------

    def run(self, body: Mapping[str, Any]) -> CheckResult:
        """Check the service ``body`` once; its status.parity, and what was left out."""
        started = time.monotonic()
        service = v1alpha1.FeatureService.model_validate(body)
        namespace = service.metadata.namespace or "default"
        endpoint = (service.status.endpoint if service.status else None) or (
            f"{service.metadata.name}.{namespace}.svc:{service.spec.server.port}"
        )
        sample_size = service.spec.monitoring.parity.sample_size
        served = [v for v in self.served_views(service) if v.offline_table is not None]
        groups: dict[tuple[tuple[str, str], ...], list[ServedView]] = {}
        for view in served:
            groups.setdefault(tuple(sorted(view.keys.items())), []).append(view)
        result = CheckResult(status={}, skipped=0)
        checked_at = self.clock()
        rng = random.Random()
        quotas = (
            [
                sample_size // len(groups) + (i < sample_size % len(groups))
                for i in range(len(groups))
            ]
            if groups
            else []
        )
        with self._connect(endpoint) as online:
            for (keys, views), quota in zip(groups.items(), quotas, strict=True):
                if quota <= 0:
                    continue
                self._deadline(started, service)
                outcome = self._check_group(online, dict(keys), views, quota, rng, started, service)
                if outcome.moved and outcome.comparison.mismatches:
                    # A table moved while values differed: once more, from a fresh sample.
                    outcome = self._check_group(
                        online, dict(keys), views, quota, rng, started, service, retry=True
                    )
                _merge(result, outcome)
        result.status = decide.summarize(result.comparison, checked_at)
        return result

    def _deadline(self, started: float, service: v1alpha1.FeatureService) -> float:
        left = self.settings.parity_timeout_seconds - (time.monotonic() - started)
        if left <= 0:
            raise errors.DeadlineExceededError(
                "DEADLINE_EXCEEDED",
                f"the parity check of FeatureService {service.metadata.namespace}/"
                f"{service.metadata.name} took longer than {self.settings.parity_timeout_seconds:g}"
                " s (FEATUREKUBE_PARITY_TIMEOUT_SECONDS): it records nothing this time",
            )
        return left

    def _check_group(
        self,
        online: OnlineClient,
        keys: dict[str, str],
        views: Sequence[ServedView],
        quota: int,
        rng: random.Random,
        started: float,
        service: v1alpha1.FeatureService,
        *,
        retry: bool = False,
    ) -> _GroupOutcome:
        before = self._moment(views)
        candidates: list[str] = []
        for view in views:
            candidates.extend(self.scan_keys(view.online_table, quota, rng))
        sample = decide.choose_sample(candidates, quota, rng.getrandbits(64))
        pre = {v.online_table: self.stamps(v.online_table, sample) for v in views}
        entities = [decide.decode_entity_key(keys, k) for k in sample]
        types = {name: t for v in views for name, t in v.types.items()}
        outcome = _GroupOutcome()
        if not entities:
            return outcome
        asked_from = _micros(self.clock())
        answer = online.get_online_features(
            columns={k: [e[k] for e in entities] for k in keys},
            features=list(types),
            timeout=min(30.0, self._deadline(started, service)),
        )
        asked_to = _micros(self.clock())
        served_values = {
            name: [
                value if status.name == "PRESENT" else None
                for value, status in zip(answer.values[name], answer.statuses[name], strict=True)
            ]
            for name in types
        }
        self._deadline(started, service)
        pulled = self._pull(views, keys, entities, asked_to)
        after = self._moment(views)
        post = {v.online_table: self.stamps(v.online_table, sample) for v in views}
        moved = {t for t in before if before[t] != after[t]}
        outcome.moved = bool(moved)
        settle = int(self.settings.parity_settle_seconds * _MICROS)
        for row, (key, entity) in enumerate(zip(sample, entities, strict=True)):
            reason: str | None = None
            for view in views:
                table = view.online_table
                first, last = pre[table].get(key), post[table].get(key)
                if first is None and last is None:
                    continue  # not in this view: null on both sides
                if first is None:
                    reason = "changed"
                    break
                ranges = tuple(sorted({*before[table][1], *after[table][1]}))
                reason = decide.skip_reason(
                    first,
                    last,
                    ranges,
                    asked_from=asked_from,
                    asked_to=asked_to,
                    ttl=view.ttl,
                    settle=settle,
                )
                if reason:
                    break
            if reason is None:
                mismatches = decide.compare_entity(
                    entity,
                    types,
                    {n: served_values[n][row] for n in types},
                    {n: pulled[n][row] for n in types},
                )
                touched = any(
                    v.online_table in moved
                    for v in views
                    for m in mismatches
                    if m.feature in v.types
                )
                if mismatches and touched and retry:
                    reason = "moved"
                else:
                    outcome.comparison.add(len(types), mismatches)
            if reason is not None:
                outcome.skipped_by[reason] = outcome.skipped_by.get(reason, 0) + 1
        return outcome

    def _pull(
        self,
        views: Sequence[ServedView],
        keys: Mapping[str, str],
        entities: Sequence[Mapping[str, Any]],
        at_micros: int,
    ) -> dict[str, list[Any]]:
        """The entities' features from the offline tables at ``at_micros``, by the SDK's
        DuckDB join: feature name in the service -> one value per entity."""
        from featurekube.joins import duckdb as duckdb_engine

        at = joins.utc_from_micros(at_micros)
        columns: dict[str, pa.Array] = {
            k: pa.array([e[k] for e in entities], pa.int64() if t == "int64" else pa.string())
            for k, t in keys.items()
        }
        columns[_TIMESTAMP] = pa.array([at] * len(entities), pa.timestamp("us", tz="UTC"))
        rows = duckdb_engine.Entities.from_source(pa.table(columns))
        selections = [
            joins.Selection(
                v.view, tuple(v.features.values()), v.prefix, v.version, v.offline_table
            )
            for v in views
        ]
        join_plan = joins.plan_join(selections, rows.describe(_TIMESTAMP), {})
        table = duckdb_engine.to_table(join_plan, rows)
        return {name: table.column(name).to_pylist() for v in views for name in v.features}


@dataclass
class _GroupOutcome:
    comparison: decide.Comparison = field(default_factory=decide.Comparison)
    skipped_by: dict[str, int] = field(default_factory=dict)
    moved: bool = False


def _merge(result: CheckResult, outcome: _GroupOutcome) -> None:
    compared, found = result.comparison, outcome.comparison
    compared.entities += found.entities
    compared.values += found.values
    compared.mismatches += found.mismatches
    examples = [*(compared.examples or ()), *(found.examples or ())]
    compared.examples = examples[: decide.EXAMPLES] or None
    for reason, count in outcome.skipped_by.items():
        result.skipped_by[reason] = result.skipped_by.get(reason, 0) + count
        result.skipped += count


class ParityRunner:
    """Runs checks off the event loop, at most ``concurrent`` at once over every
    service, in threads of their own: a check never holds up other handlers, nor
    takes the threads kopf runs them in."""

    def __init__(self, check: ParityCheck, concurrent: int) -> None:
        self.check = check
        self._executor = concurrent_futures.ThreadPoolExecutor(
            max_workers=max(1, concurrent), thread_name_prefix="parity"
        )

    async def run(self, body: Mapping[str, Any]) -> CheckResult:
        """Check ``body`` (a copy: the caller's may change meanwhile)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.check.run, copy.deepcopy(body))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
