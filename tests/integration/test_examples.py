"""Every example in ``examples/`` is valid: it parses through the spec models, fits
with the other examples, is accepted by the real API server (which fills in the same
defaults as the models), and the raw data ``examples/generate_data.py`` writes to S3
holds every column the batch views read, with the types they expect.

Transformations are run with DuckDB over the written data (Spark SQL transpiled by
sqlglot), which is enough to learn the columns and types they produce.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb
import kubernetes.client
import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq
import pytest
import sqlglot
from sqlglot import exp

from featurekube.spec import loader, v1alpha1
from support import example_data_generator

REPO = Path(__file__).parents[2]
EXAMPLES = REPO / "examples"
NAMESPACE = "rides"
RAW = "s3://featurekube-demo/raw/"
"""Where the example batch views read: the generator's --out in examples/README.md."""
PLURALS = {"FeatureView": "featureviews", "FeatureService": "featureservices"}
TIMESTAMP = pa.timestamp("us", tz="UTC")
ARROW_TYPES: dict[str, tuple[pa.DataType, ...]] = {
    "int64": (pa.int64(),),
    "float64": (pa.float64(),),
    "string": (pa.string(), pa.large_string(), pa.string_view()),
    "bool": (pa.bool_(),),
    "timestamp": (TIMESTAMP,),
    "float64_array": (pa.list_(pa.float64()), pa.large_list(pa.float64())),
}
NUMBERS = (pa.int64(), pa.float64())
SMALL = ("--start", "2026-01-01", "--days", "2", "--drivers", "15", "--riders", "60")

DOCUMENTS = loader.load_documents(loader.iter_yaml_files(EXAMPLES))
FILES = sorted({document.path for document in DOCUMENTS})


def _generator() -> ModuleType:
    """``examples/generate_data.py``, imported once."""
    return example_data_generator()


def _resources() -> list[loader.Resource]:
    return [loader.parse_resource(document) for document in DOCUMENTS]


def _views() -> dict[str, v1alpha1.FeatureView]:
    return {r.metadata.name: r for r in _resources() if isinstance(r, v1alpha1.FeatureView)}


def _services() -> list[v1alpha1.FeatureService]:
    return [r for r in _resources() if isinstance(r, v1alpha1.FeatureService)]


def _batch_views() -> dict[str, v1alpha1.FeatureView]:
    """Batch view name -> view, for views reading the generator's data."""
    return {name: view for name, view in _views().items() if view.spec.source.batch is not None}


def _directory(view: v1alpha1.FeatureView) -> str:
    """The generator's table a batch view reads: its source path below RAW."""
    batch = view.spec.source.batch
    assert batch is not None
    assert batch.path.startswith(RAW), f"{view.metadata.name} reads outside {RAW}"
    return batch.path.removeprefix(RAW).strip("/")


# (1) The files.


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_an_example_is_one_object_that_parses_through_the_spec_models(path: Path) -> None:
    documents = loader.load_documents([path])

    assert len(documents) == 1, f"{path.name}: one object per file"
    resource = loader.parse_resource(documents[0])
    assert resource.metadata.name == path.stem
    assert resource.metadata.namespace == NAMESPACE


def test_there_are_views_and_services_of_every_kind() -> None:
    views = _views()
    sources = {("push" if v.spec.source.push else "batch") for v in views.values()}
    shapes = {("aggregations" if v.spec.aggregations else "features") for v in views.values()}

    assert sources == {"batch", "push"}
    assert shapes == {"aggregations", "features"}
    assert any(v.spec.transformation for v in views.values())
    assert len(_services()) >= 2
    # One view shared by two services.
    used = [r.feature_view for s in _services() for r in s.spec.features]
    assert any(used.count(name) > 1 for name in used)


def test_entity_keys_agree_across_views() -> None:
    keys: dict[str, set[str]] = {}
    for view in _views().values():
        for entity in view.spec.entities:
            keys.setdefault(entity.name, set()).add(entity.type)

    assert {name: sorted(types) for name, types in keys.items()} == {
        "driver_id": ["int64"],
        "rider_id": ["int64"],
    }


@pytest.mark.parametrize(
    "document",
    [d for d in DOCUMENTS if d.kind == "FeatureService"],
    ids=lambda d: str(d.name),
)
def test_a_service_references_existing_features_under_unique_names(
    document: loader.Document,
) -> None:
    service = loader.parse_resource(document)
    assert isinstance(service, v1alpha1.FeatureService)
    views = _views()
    served: list[str] = []
    for reference in service.spec.features:
        assert reference.namespace in (None, NAMESPACE)
        view = views[reference.feature_view]
        missing = set(reference.features or ()) - set(view.spec.feature_names)
        assert not missing, f"{reference.feature_view} has no {sorted(missing)}"
        chosen = reference.features or view.spec.feature_names
        served += [f"{reference.prefix or ''}{name}" for name in chosen]
    requests = [r.name for r in service.spec.request_data or ()]
    computed = [t.name for t in service.spec.transformations or ()]
    names = served + requests + computed

    assert len(names) == len(set(names)), f"duplicate names: {names}"
    for transformation in service.spec.transformations or ():
        expression = sqlglot.parse_one(transformation.expression, read="spark")
        inputs = {column.name for column in expression.find_all(exp.Column)}
        assert inputs, transformation.name
        assert inputs <= set(served + requests), f"{transformation.name}: {inputs}"


# (2) The API server.


def _contains(whole: Any, part: Any, path: str = "spec") -> list[str]:
    """Where ``part`` is not found in ``whole``: every field of it, with its value."""
    if isinstance(part, dict):
        if not isinstance(whole, dict):
            return [f"{path}: expected an object, got {whole!r}"]
        return [
            problem
            for key, value in part.items()
            for problem in _contains(whole.get(key), value, f"{path}.{key}")
        ]
    if isinstance(part, list):
        if not isinstance(whole, list) or len(whole) != len(part):
            return [f"{path}: expected {part!r}, got {whole!r}"]
        return [
            problem
            for index, (w, p) in enumerate(zip(whole, part, strict=True))
            for problem in _contains(w, p, f"{path}[{index}]")
        ]
    return [] if whole == part else [f"{path}: expected {part!r}, got {whole!r}"]


def test_every_example_is_accepted_by_the_api_server_with_the_models_defaults(
    kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    api = kubernetes.client.CustomObjectsApi(kube_api)
    stored: dict[str, dict[str, Any]] = {}
    for document in DOCUMENTS:
        body = copy.deepcopy(document.body)
        body["metadata"]["namespace"] = namespace
        plural = PLURALS[body["kind"]]
        # kubectl's default: an unknown field is an error, not silently dropped.
        api.create_namespaced_custom_object(
            v1alpha1.GROUP, v1alpha1.VERSION, namespace, plural, body, field_validation="Strict"
        )

        read: dict[str, Any] = api.get_namespaced_custom_object(
            v1alpha1.GROUP, v1alpha1.VERSION, namespace, plural, body["metadata"]["name"]
        )
        spec = read["spec"]

        where = f"{body['kind']}/{body['metadata']['name']}"
        assert not _contains(spec, body["spec"]), (where, _contains(spec, body["spec"]))
        # The server fills in the defaults the models fill in, and nothing else.
        expected = loader.parse_resource(document).spec.to_yaml_dict()
        assert spec == expected, (where, _contains(spec, expected), _contains(expected, spec))
        stored[body["metadata"]["name"]] = spec

    assert stored["driver-profile"]["source"]["batch"]["format"] == "parquet"
    assert stored["driver-profile"]["deletionPolicy"] == "Retain"
    assert stored["driver-location-live"]["materialization"]["schedule"] == "@hourly"
    assert stored["driver-trip-stats"]["expectations"][0]["onViolation"] == "Warn"
    assert stored["driver-ranking"]["server"]["port"] == 50051
    for kind, plural in PLURALS.items():
        listed: dict[str, Any] = api.list_namespaced_custom_object(
            v1alpha1.GROUP, v1alpha1.VERSION, namespace, plural
        )
        names = {item["metadata"]["name"] for item in listed["items"]}
        assert names == {d.name for d in DOCUMENTS if d.kind == kind}


# (3) The raw data.


def _read_directory(filesystem: pyarrow.fs.FileSystem, directory: str) -> pa.Table:
    """Every parquet file of ``directory`` in name order, checking each stores its
    timestamps as microseconds adjusted to UTC (what Spark 4 reads)."""
    infos = filesystem.get_file_info(pyarrow.fs.FileSelector(directory))
    paths = sorted(info.path for info in infos if info.is_file)
    assert paths, f"nothing written under {directory}"
    tables = []
    for path in paths:
        with filesystem.open_input_file(path) as stream:
            parquet = pq.ParquetFile(stream)
            for index in range(len(parquet.schema)):
                column = parquet.schema.column(index)
                logical = column.logical_type.to_json()
                if '"Timestamp"' in logical:
                    assert '"timeUnit":"microseconds"' in logical, (path, column.name, logical)
                    assert '"isAdjustedToUTC":true' in logical, (path, column.name, logical)
            tables.append(parquet.read())
    return pa.concat_tables(tables)


def _transform(sql: str, source: pa.Table) -> pa.Table:
    """The transformation's result over ``source``, by DuckDB in UTC."""
    missing = {c.name for c in sqlglot.parse_one(sql, read="spark").find_all(exp.Column)} - set(
        source.column_names
    )
    assert not missing, f"the transformation reads columns the data lacks: {sorted(missing)}"
    with duckdb.connect() as connection:
        connection.execute("SET TimeZone = 'UTC'")
        connection.register("source", source)
        return connection.sql(
            sqlglot.transpile(sql, read="spark", write="duckdb")[0]
        ).to_arrow_table()


def _column_problems(view: v1alpha1.FeatureView, raw: pa.Table) -> list[str]:
    """What the view reads that ``raw`` (and its transformation) does not provide."""
    spec = view.spec
    batch = spec.source.batch
    assert batch is not None
    problems: list[str] = []

    def expect(
        table: pa.Table, column: str, types: tuple[pa.DataType, ...] | None, what: str
    ) -> None:
        """``column`` is in ``table``, of one of ``types`` (None: of any type)."""
        if column not in table.column_names:
            problems.append(f"{what}: no column {column}")
        elif types is not None and table.schema.field(column).type not in types:
            problems.append(f"{what}: {column} is {table.schema.field(column).type}, not {types}")

    stamps = [batch.timestamp_field, *filter(None, [batch.created_timestamp_field])]
    for column in stamps:
        expect(raw, column, (TIMESTAMP,), "source")
    rows = _transform(spec.transformation.sql, raw) if spec.transformation else raw
    assert rows.num_rows > 0, "the transformation keeps no rows"
    for column in stamps:
        expect(rows, column, (TIMESTAMP,), "rows")
    for entity in spec.entities:
        expect(rows, entity.name, ARROW_TYPES[entity.type], "entity")
    for feature in spec.features or ():
        expect(rows, feature.name, ARROW_TYPES[feature.type], "feature")
    for aggregation in spec.aggregations or ():
        types = None  # count and count_distinct take any column
        if aggregation.type is not None:
            types = ARROW_TYPES[aggregation.type]
        elif aggregation.function in ("mean", "stddev"):
            types = NUMBERS
        expect(rows, aggregation.column, types, f"aggregation {aggregation.name}")
    return problems


def test_the_generator_writes_every_column_the_batch_views_read(s3_prefix: str) -> None:
    generate = _generator()
    seed = ("--seed", "11")

    assert generate.main(["--out", s3_prefix, *SMALL, *seed]) == 0

    filesystem, root = pyarrow.fs.FileSystem.from_uri(s3_prefix)
    root = root.rstrip("/")
    views = _batch_views()
    assert {_directory(view) for view in views.values()} == set(generate.SCHEMAS)
    for name, view in views.items():
        raw = _read_directory(filesystem, f"{root}/{_directory(view)}")
        assert raw.num_rows > 0
        assert not _column_problems(view, raw), (name, _column_problems(view, raw))


def test_the_generator_writes_the_same_data_for_a_seed_and_replaces_an_earlier_run(
    s3_prefix: str,
) -> None:
    generate = _generator()
    filesystem, root = pyarrow.fs.FileSystem.from_uri(s3_prefix)
    root = root.rstrip("/")
    first, second = f"{s3_prefix}first/", f"{s3_prefix}second/"

    generate.main(["--out", first, *SMALL, "--seed", "3"])
    generate.main(["--out", second, "--days", "1", "--drivers", "4", "--riders", "9"])
    generate.main(["--out", second, *SMALL, "--seed", "3"])

    settings = generate.Settings(days=2, drivers=15, riders=60, seed=3)
    for name, table in generate.make_tables(settings).items():
        by_day = generate.split_by_day(table, "created_timestamp")
        expected = pa.concat_tables([part for _, part in by_day])
        assert _read_directory(filesystem, f"{root}/first/{name}").equals(expected), name
        assert _read_directory(filesystem, f"{root}/second/{name}").equals(expected), name
