"""``FeatureStore``: discover features and pull point-in-time correct training sets.

A store holds feature definitions, read from a cluster (:meth:`FeatureStore.from_cluster`:
the API server of ``KUBECONFIG``, or the pod's own inside a cluster) or from a
directory of YAML (:meth:`FeatureStore.from_directory`, no cluster needed), and finds
each view's offline Delta table: the ``status.offlineUri`` the operator wrote, else
``<offline_uri>/<namespace>/<view>/v<version>``.

:meth:`FeatureStore.get_historical_features` plans a join (:mod:`featurekube.joins.plan`)
and returns a :class:`HistoricalFeatures`, which runs it when asked for its rows:
without a JVM (:mod:`featurekube.joins.duckdb`) for ``to_arrow``, ``to_pandas`` and
``to_parquet``, in Spark (:mod:`featurekube.joins.spark`) for ``to_spark`` or when the
entity rows are a Spark DataFrame. Both follow the point-in-time rule of docs/semantics.md.

Constructing a store reads definitions (I/O); a pull reads the offline store.

Errors, beside those of :mod:`featurekube.joins.plan`::

    FeaturekubeError
    └── DefinitionsError   feature definitions could not be read or do not validate
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydantic
import yaml

from featurekube import _deps, errors
from featurekube.joins import plan
from featurekube.offline import layout as offline_layout
from featurekube.spec import loader, v1alpha1

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]
    import pyarrow as pa
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql import SparkSession

    from featurekube.joins import duckdb as duckdb_engine

__all__ = ["DefinitionsError", "FeatureStore", "HistoricalFeatures"]

_VERSION_DIRECTORY = re.compile(r"^v([0-9]+)$")


DefinitionsError = errors.DefinitionsError


def _is_spark_frame(value: object) -> bool:
    return type(value).__module__.startswith("pyspark.sql") and hasattr(value, "sparkSession")


class FeatureStore:
    """Feature definitions and their offline tables; the door to training data.

    Example:

        >>> store = FeatureStore.from_directory("examples/", offline_uri="s3://lake/offline")
        >>> [view.metadata.name for view in store.list_feature_views("rides")][:2]
        ['driver-location-live', 'driver-profile']
        >>> training = store.get_historical_features(  # doctest: +SKIP
        ...     entity_df, feature_service="rides/eta-model"
        ... ).to_pandas()
    """

    def __init__(
        self,
        definitions: Iterable[v1alpha1.FeatureView | v1alpha1.FeatureService],
        *,
        namespace: str = "default",
        offline_uri: str | None = None,
        snapshots: Mapping[plan.VersionKey, Mapping[str, Any]] | None = None,
    ) -> None:
        """A store of ``definitions``. ``namespace`` is where names without one are
        looked up; ``offline_uri`` is the root of the offline store, where the tables of
        views whose status names none are found. ``snapshots`` are the snapshot
        documents of the views' versions (a cluster's): with them, a pull reads each
        view as the version it serves (or a service pins) has it, never as the live
        spec does while a newer version backfills."""
        self._snapshots = dict(snapshots) if snapshots is not None else None
        self.namespace = namespace
        """Where feature views and services named without a namespace are looked up."""
        self.offline_uri = offline_uri.rstrip("/") if offline_uri else None
        """The offline store's root: ``<offline_uri>/<namespace>/<view>/v<version>``."""
        self._views: dict[plan.ViewKey, v1alpha1.FeatureView] = {}
        self._services: dict[plan.ViewKey, v1alpha1.FeatureService] = {}
        for definition in definitions:
            key = (definition.metadata.namespace or "default", definition.metadata.name)
            if isinstance(definition, v1alpha1.FeatureView):
                self._views[key] = definition
            else:
                self._services[key] = definition

    @classmethod
    def from_directory(
        cls,
        path: str | os.PathLike[str],
        *,
        offline_uri: str | None = None,
        namespace: str = "default",
    ) -> FeatureStore:
        """A store of the FeatureViews and FeatureServices in the YAML files under
        ``path``; other documents are skipped. Raises :class:`DefinitionsError` for a
        file that does not parse or an object that does not validate."""
        root = Path(path)
        if not root.exists():
            raise DefinitionsError(f"{root} does not exist: give a directory of YAML files")
        try:
            documents = loader.load_documents(loader.iter_yaml_files(root))
        except (yaml.YAMLError, OSError) as exc:
            raise DefinitionsError(f"cannot read the definitions under {root}: {exc}") from exc
        definitions = []
        for document in documents:
            if not document.is_ours:
                continue
            try:
                definitions.append(loader.parse_resource(document))
            except pydantic.ValidationError as exc:
                first = exc.errors()[0]
                where = loader.format_path(tuple(first["loc"]))
                raise DefinitionsError(
                    f"{document.path}:{document.line_of(tuple(first['loc']))}: "
                    f"{document.kind}/{document.name}: {where}: {first['msg']}. Run "
                    f"`featurekube validate {root}` for every problem"
                ) from exc
        return cls(definitions, namespace=namespace, offline_uri=offline_uri)

    @classmethod
    def from_cluster(
        cls,
        namespace: str | None = None,
        *,
        kubeconfig: str | None = None,
        offline_uri: str | None = None,
    ) -> FeatureStore:
        """A store of the live FeatureViews and FeatureServices of a cluster, status
        included: ``namespace``'s (default: the kubeconfig context's, else
        ``default``) and those of other namespaces that its services use.

        Connects with ``kubeconfig`` (default ``$KUBECONFIG``, else ~/.kube/config), or
        with the pod's service account when running in a cluster without one. Raises
        :class:`featurekube.errors.ClusterError` if the cluster cannot be read.
        """
        from featurekube.planning import cluster

        with cluster.connect_here(kubeconfig) as connection:
            chosen = namespace or connection.namespace or "default"
            live = cluster.read_live(connection, [chosen])
            definitions = list(live.resources)
            wanted = {
                reference.namespace
                for service in definitions
                if isinstance(service, v1alpha1.FeatureService)
                and (service.metadata.namespace or "default") == chosen
                for reference in service.spec.features
                if reference.namespace and reference.namespace != chosen
            }
            if wanted:
                more = cluster.read_live(connection, sorted(wanted)).resources
                definitions.extend(r for r in more if isinstance(r, v1alpha1.FeatureView))
            snapshots = cluster.read_snapshots(connection, {chosen, *wanted})
        return cls(definitions, namespace=chosen, offline_uri=offline_uri, snapshots=snapshots)

    def list_feature_views(self, namespace: str | None = None) -> list[v1alpha1.FeatureView]:
        """The FeatureViews of ``namespace`` (default: the store's; ``"*"``: all), by name."""
        return [self._views[k] for k in sorted(self._views) if _in(k, namespace, self.namespace)]

    def list_feature_services(self, namespace: str | None = None) -> list[v1alpha1.FeatureService]:
        """The FeatureServices of ``namespace`` (default: the store's; ``"*"``: all)."""
        return [
            self._services[k] for k in sorted(self._services) if _in(k, namespace, self.namespace)
        ]

    def get_feature_view(self, name: str, namespace: str | None = None) -> v1alpha1.FeatureView:
        """A FeatureView by name; raises :class:`plan.FeatureViewNotFoundError`."""
        key = (namespace or self.namespace, name)
        view = self._views.get(key)
        if view is None:
            known = sorted(n for ns, n in self._views if ns == key[0])
            raise plan.FeatureViewNotFoundError(
                f"no FeatureView {key[0]}/{name}; known in namespace {key[0]}: "
                f"{', '.join(known) or 'none'}"
            )
        return view

    def get_feature_service(
        self, name: str, namespace: str | None = None
    ) -> v1alpha1.FeatureService:
        """A FeatureService by name; raises :class:`plan.FeatureServiceNotFoundError`."""
        key = (namespace or self.namespace, name)
        service = self._services.get(key)
        if service is None:
            known = sorted(n for ns, n in self._services if ns == key[0])
            raise plan.FeatureServiceNotFoundError(
                f"no FeatureService {key[0]}/{name}; known in namespace {key[0]}: "
                f"{', '.join(known) or 'none'}"
            )
        return service

    def describe(self, name: str, namespace: str | None = None) -> str:
        """A readable summary of the FeatureView or FeatureService called ``name``:
        owner, entities, features and their types, TTL, offline table, status."""
        key = (namespace or self.namespace, name)
        parts = []
        if key in self._views:
            parts.append(_describe_view(self._views[key]))
        if key in self._services:
            parts.append(_describe_service(self._services[key]))
        if not parts:
            known = sorted(n for ns, n in (*self._views, *self._services) if ns == key[0])
            raise plan.FeatureViewNotFoundError(
                f"no FeatureView or FeatureService {key[0]}/{name}; known in namespace "
                f"{key[0]}: {', '.join(known) or 'none'}"
            )
        return "\n\n".join(parts)

    def offline_table(self, name: str, namespace: str | None = None) -> str:
        """The URI of a view's offline Delta table: its ``status.offlineUri``, else
        ``<offline_uri>/<namespace>/<view>/v<version>`` with the status's version, else
        the newest version found there. Raises :class:`plan.OfflineStoreError`."""
        view = self.get_feature_view(name, namespace)
        view_namespace = view.metadata.namespace or "default"
        status = view.status
        if status is not None and status.offline_uri:
            return status.offline_uri
        where = f"FeatureView {view_namespace}/{name}"
        if self.offline_uri is None:
            raise plan.OfflineStoreError(
                f"{where} has no status.offlineUri (it has not been materialized offline "
                "yet, or its definition was read from files): give the store the offline "
                "store's root, FeatureStore(..., offline_uri='s3://BUCKET/PREFIX')"
            )
        directory = offline_layout.view_directory(self.offline_uri, view_namespace, name)
        version = status.version if status is not None else None
        if version is None:
            version = _newest_version(directory)
        if version is None:
            raise plan.OfflineStoreError(
                f"{where} has no offline table under {directory}/ (no v<N>/ Delta table "
                "there): it has not been materialized offline yet, or offline_uri is not "
                "the root the operator writes to"
            )
        return offline_layout.table_uri(self.offline_uri, view_namespace, name, version)

    def get_historical_features(
        self,
        entity_df: pd.DataFrame | pa.Table | str | os.PathLike[str] | SparkDataFrame,
        features: Sequence[str] | None = None,
        *,
        feature_service: str | None = None,
        timestamp_column: str = plan.DEFAULT_TIMESTAMP_COLUMN,
        settings: duckdb_engine.DuckDBSettings | None = None,
    ) -> HistoricalFeatures:
        """Point-in-time correct features for every row of ``entity_df``.

        ``entity_df`` holds the join keys of the views asked for and, in
        ``timestamp_column``, the time T of each row (a timestamp; without a time zone
        it is UTC). It may be a pandas DataFrame, a pyarrow Table, the path or s3:// URI
        of parquet data, or a Spark DataFrame. Ask for ``features``
        (``["driver-profile:rating", "rides/driver-trip-stats:trips_7d"]``) or for a
        ``feature_service``, whose prefixes name the columns and whose request-time
        transformations are computed too (from request fields in ``entity_df``).

        Each row gets, from each view, the values of its row for the same keys with the
        greatest event time E <= T (ties: the greater created time), unless T - E
        exceeds the view's TTL; else nulls. From a cluster, a view is read as the version
        it serves has it (or the version a FeatureService's reference pins): while a
        newer version backfills, a retyped feature keeps the serving version's type, and
        a feature only the newer version has is refused, naming both versions. Rows come
        back in the caller's order, duplicates included, with every column of
        ``entity_df`` followed by the features. The request is checked now; the join
        runs when the result is asked for. Raises a :class:`plan.RetrievalError` saying
        what to change.
        """
        if (features is None) == (feature_service is None):
            raise plan.FeatureReferenceError(
                "ask for features=['FEATURE_VIEW:FEATURE', ...] or for feature_service="
                "'NAME', not both or neither"
            )
        transformations: Sequence[v1alpha1.RequestTransformation] = ()
        request_fields: Sequence[v1alpha1.RequestField] = ()
        if feature_service is not None:
            namespace, _, name = feature_service.rpartition("/")
            service = self.get_feature_service(name, namespace or None)
            selections = plan.resolve_service(service, self._views, snapshots=self._snapshots)
            transformations = service.spec.transformations or ()
            request_fields = service.spec.request_data or ()
        else:
            selections = plan.resolve_references(
                list(features or ()), self._views, self.namespace, snapshots=self._snapshots
            )
        entities: duckdb_engine.Entities | SparkDataFrame
        if _is_spark_frame(entity_df):
            _deps.import_optional("pyspark", extra="spark")
            from pyspark.sql import DataFrame as SparkDataFrame

            from featurekube.joins import spark as spark_engine

            assert isinstance(entity_df, SparkDataFrame)
            entities = entity_df
            frame = spark_engine.describe(entity_df, timestamp_column)
        else:
            from featurekube.joins import duckdb as duckdb_engine

            entities = duckdb_engine.Entities.from_source(entity_df)
            frame = entities.describe(timestamp_column)
        # Each version's own table: a pinned one's, else the serving one's.
        tables = {
            selection.key: selection.table_uri
            or self.offline_table(selection.key[1], selection.key[0])
            for selection in selections
        }
        join_plan = plan.plan_join(
            selections,
            frame,
            tables,
            timestamp_column=timestamp_column,
            request_fields=request_fields,
            transformations=transformations,
        )
        # Compiled now so that a bad expression fails the call, not the first read.
        plan.compile_transformations(join_plan)
        return HistoricalFeatures(join_plan, entities, settings)

    def save_reference(
        self,
        name: str,
        training: HistoricalFeatures | pa.Table | pd.DataFrame,
        *,
        view: str | Sequence[str] | None = None,
        prefix: str = "",
        storage_options: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """Save the distribution of a training pull's features as the drift reference
        ``name``: a view whose ``spec.monitoring.drift.reference.trainingPull`` is
        ``name`` then measures each window's drift (PSI) against it
        (docs/monitoring.md). Saving under a name used before replaces it.

        ``training`` is what :meth:`get_historical_features` returned (its columns
        are mapped back to their views' features, prefixes and all; ``view`` keeps
        only the views named, ``"name"`` or ``"namespace/name"``), or the pull's rows
        as a pyarrow Table or pandas DataFrame, with ``view`` naming the one view they
        come from and ``prefix`` what its feature columns are prefixed with. Each
        view's profile is stored beside the offline table of the version the pull
        read; a view's new version needs the reference saved again.

        Returns, per view (``namespace/name``), the offline table the reference was
        stored for. Raises :class:`DefinitionsError` for a name that is not a DNS
        label or a frame of over 20 million rows,
        :class:`plan.FeatureReferenceError` when no feature column is found, and
        :class:`featurekube.errors.OfflineWriteError` when it cannot be stored.
        """
        import pyarrow as pa

        from featurekube.monitoring import references

        wanted = [view] if isinstance(view, str) else list(view or ())
        targets: list[tuple[str, str, list[tuple[str, str, str]]]] = []
        if isinstance(training, HistoricalFeatures):
            table = training.to_arrow()
            for join in training.plan.views:
                label = f"{join.namespace}/{join.name}"
                if wanted and not {join.name, label} & set(wanted):
                    continue
                columns = [(f.output, f.name, f.type) for f in join.features]
                targets.append((label, join.table_uri, columns))
            if wanted and len(targets) < len(wanted):
                raise plan.FeatureReferenceError(
                    f"reference {name!r}: the training pull reads "
                    f"{', '.join(f'{v.namespace}/{v.name}' for v in training.plan.views)}, "
                    f"not every one of {', '.join(wanted)}"
                )
        else:
            if len(wanted) != 1:
                raise plan.FeatureReferenceError(
                    f"reference {name!r}: rows given as a table need view='NAME', the one "
                    "feature view their feature columns come from"
                )
            table = training if isinstance(training, pa.Table) else pa.Table.from_pandas(training)
            namespace, _, view_name = wanted[0].rpartition("/")
            found = self.get_feature_view(view_name, namespace or None)
            label = f"{found.metadata.namespace or 'default'}/{view_name}"
            columns = [
                (f"{prefix}{feature}", feature, value_type)
                for feature, value_type in found.spec.feature_types().items()
                if f"{prefix}{feature}" in table.column_names
            ]
            if not columns:
                raise plan.FeatureReferenceError(
                    f"reference {name!r}: the rows have no column of a feature of "
                    f"FeatureView {label} (looked for "
                    f"{', '.join(prefix + f for f in found.spec.feature_names)}); pass the "
                    "prefix their columns carry, prefix='...'"
                )
            targets.append((label, self.offline_table(view_name, namespace or None), columns))
        saved: dict[str, str] = {}
        for label, table_uri, columns in targets:
            references.save_training_reference(
                name,
                table,
                columns,
                table_uri,
                storage_options=storage_options,
                view_label=f"FeatureView {label}",
            )
            saved[label] = table_uri
        return saved


class HistoricalFeatures:
    """A training set: entity rows with their point-in-time features, computed when
    first asked for (and kept once computed as Arrow)."""

    def __init__(
        self,
        join_plan: plan.JoinPlan,
        entities: duckdb_engine.Entities | SparkDataFrame,
        settings: duckdb_engine.DuckDBSettings | None = None,
    ) -> None:
        self.plan = join_plan
        """What will be read and joined."""
        self._entities = entities
        self._settings = settings
        self._table: pa.Table | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        """The result's columns: the entity rows', the features', the transformations'."""
        return self.plan.output_columns

    def _in_spark(self) -> bool:
        return _is_spark_frame(self._entities)

    def to_arrow(self) -> pa.Table:
        """The result as a pyarrow Table, joined without a JVM (in Spark if the entity
        rows are a Spark DataFrame)."""
        if self._table is None:
            if self._in_spark():
                frame = self._entities
                self._table = self.to_spark(frame.sparkSession).toArrow()  # type: ignore[union-attr]
            else:
                from featurekube.joins import duckdb as duckdb_engine

                assert isinstance(self._entities, duckdb_engine.Entities)
                self._table = duckdb_engine.to_table(self.plan, self._entities, self._settings)
        return self._table

    def to_pandas(self) -> pd.DataFrame:
        """The result as a pandas DataFrame (with a fresh RangeIndex)."""
        _deps.import_optional("pandas", extra="pandas")
        return self.to_arrow().to_pandas()

    def iter_batches(self) -> Iterator[pa.Table]:
        """The result in chunks, in order, each computed when reached: memory stays
        bounded however many entity rows there are."""
        if self._table is not None or self._in_spark():
            yield self.to_arrow()
            return
        from featurekube.joins import duckdb as duckdb_engine

        assert isinstance(self._entities, duckdb_engine.Entities)
        yield from duckdb_engine.execute(self.plan, self._entities, self._settings)

    def to_parquet(self, path: str | os.PathLike[str]) -> None:
        """Write the result to one parquet file, on disk or s3://, chunk by chunk."""
        import pyarrow.parquet as pq

        from featurekube.joins import duckdb as duckdb_engine

        filesystem, where = duckdb_engine.filesystem(str(path))
        writer: pq.ParquetWriter | None = None
        try:
            for chunk in self.iter_batches():
                if writer is None:
                    writer = pq.ParquetWriter(where, chunk.schema, filesystem=filesystem)
                writer.write_table(chunk)
        finally:
            if writer is not None:
                writer.close()

    def to_spark(self, spark: SparkSession) -> SparkDataFrame:
        """The result as a Spark DataFrame, joined in Spark by the same rules: for entity
        frames too big for one machine. Entity rows given as parquet are read by Spark,
        which refuses nanosecond timestamps: write them in microseconds."""
        _deps.import_optional("pyspark", extra="spark")
        from featurekube.joins import spark as spark_engine

        frame = spark_engine.entity_frame(spark, self._entities, self.plan)
        return spark_engine.execute(self.plan, frame)


def _in(key: plan.ViewKey, wanted: str | None, default: str) -> bool:
    return wanted == "*" or key[0] == (wanted or default)


def _newest_version(directory: str) -> int | None:
    """The greatest N such that ``directory/vN`` holds a Delta table, or None."""
    import pyarrow.fs as pafs

    from featurekube.joins import duckdb as duckdb_engine

    filesystem, path = duckdb_engine.filesystem(directory)
    try:
        found = filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except OSError as exc:
        raise plan.OfflineStoreError(f"cannot list {directory}: {exc}") from exc
    versions = []
    for info in found:
        match = _VERSION_DIRECTORY.match(info.base_name)
        if match and info.type == pafs.FileType.Directory:
            log = filesystem.get_file_info(f"{info.path}/_delta_log")
            if log.type == pafs.FileType.Directory:
                versions.append(int(match.group(1)))
    return max(versions, default=None)


def _describe_view(view: v1alpha1.FeatureView) -> str:
    spec = view.spec
    lines = [
        f"FeatureView {view.metadata.namespace or 'default'}/{view.metadata.name}",
        f"  owner:       {spec.owner}",
    ]
    if spec.description:
        lines.append(f"  description: {' '.join(spec.description.split())}")
    entities = ", ".join(f"{e.name} ({e.type})" for e in spec.entities)
    lines.append(f"  entities:    {entities}")
    lines.append(f"  ttl:         {spec.ttl or 'none'}")
    if spec.aggregation_interval:
        lines.append(f"  interval:    {spec.aggregation_interval}")
    if spec.tags:
        lines.append(
            "  tags:        " + ", ".join(f"{k}={v}" for k, v in sorted(spec.tags.items()))
        )
    status = view.status
    if status is not None:
        ready = next((c for c in status.conditions or () if c.type == "Ready"), None)
        if ready is not None:
            lines.append(f"  ready:       {ready.status} ({ready.message or ready.reason})")
        if status.offline_uri:
            lines.append(f"  offline:     {status.offline_uri}")
        if status.last_materialized_window is not None:
            window = status.last_materialized_window
            lines.append(f"  materialized: {window.start.isoformat()} .. {window.end.isoformat()}")
    lines.append("  features:")
    described = {f.name: f.description for f in spec.features or ()}
    described.update({a.name: a.description for a in spec.aggregations or ()})
    for name, value_type in spec.feature_types().items():
        about = f"  {described[name]}" if described.get(name) else ""
        lines.append(f"    {name:<28} {value_type:<14}{about}")
    return "\n".join(lines)


def _describe_service(service: v1alpha1.FeatureService) -> str:
    spec = service.spec
    namespace = service.metadata.namespace or "default"
    lines = [f"FeatureService {namespace}/{service.metadata.name}", f"  owner:       {spec.owner}"]
    if spec.description:
        lines.append(f"  description: {' '.join(spec.description.split())}")
    lines.append("  features:")
    for reference in spec.features:
        view = f"{reference.namespace + '/' if reference.namespace else ''}{reference.feature_view}"
        chosen = ", ".join(reference.features) if reference.features else "all"
        prefix = f" (prefix {reference.prefix})" if reference.prefix else ""
        lines.append(f"    {view}: {chosen}{prefix}")
    if spec.request_data:
        lines.append("  request data:")
        lines.extend(f"    {f.name:<28} {f.type}" for f in spec.request_data)
    if spec.transformations:
        lines.append("  transformations:")
        lines.extend(
            f"    {t.name:<28} {t.type:<14}  = {t.expression}" for t in spec.transformations
        )
    if service.status is not None and service.status.endpoint:
        lines.append(f"  endpoint:    {service.status.endpoint}")
    return "\n".join(lines)
