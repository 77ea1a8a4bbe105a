"""Point-in-time training pulls from offline Delta tables on the local platform's S3.

Every rule of the point-in-time join (docs/semantics.md) has a hand-built case below
(``CASES``), run without a JVM and, all together, in Spark; a generated data set is checked against
an answer computed here in plain Python, and the Spark path against the default one.
The offline tables are written here with deltalake in the layout the job writes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import boto3
import deltalake
import kubernetes.client
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from featurekube import ondemand
from featurekube.joins import duckdb as duckdb_engine
from featurekube.joins import plan
from featurekube.offline import layout
from featurekube.spec import v1alpha1
from featurekube.store import FeatureStore

UTC = dt.UTC
T0 = dt.datetime(2026, 1, 10, 12, tzinfo=UTC)
US = dt.timedelta(microseconds=1)
MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
WRITE_OPTIONS = {"AWS_S3_ALLOW_UNSAFE_RENAME": "true"}


def _view(
    name: str,
    features: Mapping[str, str],
    *,
    entities: Mapping[str, str] | None = None,
    ttl: str | None = None,
    namespace: str = "rides",
    aggregations: bool = False,
) -> v1alpha1.FeatureView:
    spec: dict[str, Any] = {
        "owner": "tests",
        "entities": [
            {"name": n, "type": t} for n, t in (entities or {"driver_id": "int64"}).items()
        ],
        "source": {"batch": {"path": "s3://raw/rows/"}},
    }
    if aggregations:
        spec["aggregationInterval"] = "10m"
        spec["aggregations"] = [
            {"name": n, "column": "trip_id", "function": "count", "window": "1h"} for n in features
        ]
    else:
        spec["features"] = [{"name": n, "type": t} for n, t in features.items()]
    if ttl:
        spec["ttl"] = ttl
    return v1alpha1.FeatureView.model_validate(
        {"metadata": {"name": name, "namespace": namespace}, "spec": spec}
    )


def _arrow_schema(view: v1alpha1.FeatureView) -> pa.Schema:
    time = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            *(
                pa.field(e.name, pa.int64() if e.type == "int64" else pa.string())
                for e in view.spec.entities
            ),
            *(pa.field(n, ondemand.ARROW_TYPES[t]) for n, t in view.spec.feature_types().items()),
            pa.field(layout.EVENT_TIMESTAMP, time),
            pa.field(layout.CREATED_TIMESTAMP, time),
            *([pa.field(layout.LATEST_EVENT_TIMESTAMP, time)] if view.spec.aggregations else []),
            pa.field(layout.INGESTION_TIMESTAMP, time),
            pa.field(layout.EVENT_DATE, pa.date32()),
        ]
    )


def write_table(
    root: str, view: v1alpha1.FeatureView, commits: Sequence[Sequence[Mapping[str, Any]]]
) -> str:
    """Write ``view``'s offline table under ``root`` as the job lays it out, one Delta
    commit per item of ``commits``. A row gives keys and features by name, ``E`` (its
    event time) and optionally ``C`` (its created time, default E) and, for
    aggregation views, ``L`` (the entity's latest event, default E)."""
    uri = f"{root.rstrip('/')}/{view.metadata.namespace}/{view.metadata.name}/v1"
    schema = _arrow_schema(view)
    options = WRITE_OPTIONS if uri.startswith("s3://") else None
    for rows in commits or [[]]:
        columns: dict[str, list[Any]] = {f.name: [] for f in schema}
        for row in rows:
            for field in schema:
                if field.name == layout.EVENT_TIMESTAMP:
                    value = row["E"]
                elif field.name in (layout.CREATED_TIMESTAMP, layout.INGESTION_TIMESTAMP):
                    value = row.get("C", row["E"])
                elif field.name == layout.LATEST_EVENT_TIMESTAMP:
                    value = row.get("L", row["E"])
                elif field.name == layout.EVENT_DATE:
                    value = row["E"].astimezone(UTC).date()
                else:
                    value = row.get(field.name)
                columns[field.name].append(value)
        table = pa.table({f.name: pa.array(columns[f.name], f.type) for f in schema}, schema=schema)
        deltalake.write_deltalake(
            uri,
            table,
            partition_by=[layout.EVENT_DATE],
            mode="append",
            storage_options=options,
        )
    return uri


@dataclasses.dataclass(frozen=True)
class Case:
    """One rule: views and their rows, entity rows, and the features each row gets."""

    name: str
    views: Sequence[tuple[v1alpha1.FeatureView, Sequence[Sequence[Mapping[str, Any]]]]]
    entities: pd.DataFrame
    features: Sequence[str]
    expected: Sequence[Mapping[str, Any]]

    def store(self, root: str) -> FeatureStore:
        for view, commits in self.views:
            write_table(root, view, commits)
        namespace = self.views[0][0].metadata.namespace or "default"
        return FeatureStore([v for v, _ in self.views], namespace=namespace, offline_uri=root)


def _entities(rows: Sequence[Mapping[str, Any]], **dtypes: str) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows))
    for column, dtype in dtypes.items():
        frame[column] = frame[column].astype(dtype)
    return frame


PROFILE = _view("profile", {"rating": "float64"})

CASES = [
    Case(
        "a null in the latest row is the value: nothing older shows through",
        [
            (
                PROFILE,
                [
                    [
                        {"driver_id": 1, "E": T0 - dt.timedelta(hours=1), "rating": 4.0},
                        {"driver_id": 1, "E": T0, "rating": None},
                    ]
                ],
            )
        ],
        _entities(
            [
                {"driver_id": 1, "event_timestamp": T0},
                {"driver_id": 1, "event_timestamp": T0 - US},
            ]
        ),
        ["profile:rating"],
        [{"rating": None}, {"rating": 4.0}],
    ),
    Case(
        "an event at T counts, a later one does not",
        [
            (
                PROFILE,
                [
                    [
                        {"driver_id": 1, "E": T0 - dt.timedelta(hours=1), "rating": 4.0},
                        {"driver_id": 1, "E": T0, "rating": 4.5},
                        {"driver_id": 1, "E": T0 + dt.timedelta(seconds=1), "rating": 5.0},
                    ]
                ],
            )
        ],
        _entities(
            [
                {"driver_id": 1, "event_timestamp": T0},
                {"driver_id": 1, "event_timestamp": T0 - US},
                {"driver_id": 1, "event_timestamp": T0 - dt.timedelta(hours=2)},
                {"driver_id": 1, "event_timestamp": T0 + dt.timedelta(seconds=1)},
            ]
        ),
        ["profile:rating"],
        [{"rating": 4.5}, {"rating": 4.0}, {"rating": None}, {"rating": 5.0}],
    ),
    Case(
        "a value exactly ttl old still counts, one microsecond older does not",
        [
            (
                _view("recent", {"speed": "float64"}, ttl="1h"),
                [[{"driver_id": 1, "E": T0, "speed": 31.5}]],
            )
        ],
        _entities(
            [
                {"driver_id": 1, "event_timestamp": T0 + dt.timedelta(hours=1)},
                {"driver_id": 1, "event_timestamp": T0 + dt.timedelta(hours=1) + US},
                {"driver_id": 1, "event_timestamp": T0},
            ]
        ),
        ["recent:speed"],
        [{"speed": 31.5}, {"speed": None}, {"speed": 31.5}],
    ),
    Case(
        "equal event times go to the greater created time, whatever the write order",
        [
            (
                PROFILE,
                [
                    [{"driver_id": 1, "E": T0, "C": T0 + dt.timedelta(hours=2), "rating": 2.0}],
                    [{"driver_id": 1, "E": T0, "C": T0 + dt.timedelta(hours=1), "rating": 1.0}],
                    [
                        {"driver_id": 2, "E": T0, "C": T0 + dt.timedelta(hours=3), "rating": 4.0},
                        {"driver_id": 2, "E": T0, "C": T0 + dt.timedelta(hours=1), "rating": 3.0},
                    ],
                ],
            )
        ],
        _entities(
            [
                {"driver_id": 1, "event_timestamp": T0 + dt.timedelta(days=1)},
                {"driver_id": 2, "event_timestamp": T0},
            ]
        ),
        ["profile:rating"],
        [{"rating": 2.0}, {"rating": 4.0}],
    ),
    Case(
        "a row that arrived late still counts by its event time",
        [
            (
                PROFILE,
                [
                    [{"driver_id": 1, "E": T0 - dt.timedelta(hours=2), "rating": 2.0}],
                    # Written five hours after T, about an event one hour before it.
                    [
                        {
                            "driver_id": 1,
                            "E": T0 - dt.timedelta(hours=1),
                            "C": T0 + dt.timedelta(hours=5),
                            "rating": 1.0,
                        }
                    ],
                ],
            )
        ],
        _entities([{"driver_id": 1, "event_timestamp": T0}]),
        ["profile:rating"],
        [{"rating": 1.0}],
    ),
    Case(
        "a view without rows gives nulls beside one with rows",
        [
            (PROFILE, [[{"driver_id": 1, "E": T0, "rating": 3.5}]]),
            (_view("empty", {"trips": "int64"}), []),
        ],
        _entities([{"driver_id": 1, "event_timestamp": T0}]),
        ["profile:rating", "empty:trips"],
        [{"rating": 3.5, "trips": None}],
    ),
    Case(
        "composite keys match on every key",
        [
            (
                _view(
                    "zones",
                    {"demand": "float64"},
                    entities={"driver_id": "int64", "zone": "string"},
                ),
                [
                    [
                        {
                            "driver_id": 1,
                            "zone": "a",
                            "E": T0 - dt.timedelta(hours=1),
                            "demand": 1.0,
                        },
                        {
                            "driver_id": 1,
                            "zone": "b",
                            "E": T0 - dt.timedelta(hours=1),
                            "demand": 2.0,
                        },
                        {
                            "driver_id": 2,
                            "zone": "a",
                            "E": T0 - dt.timedelta(hours=1),
                            "demand": 3.0,
                        },
                    ]
                ],
            )
        ],
        _entities(
            [
                {"driver_id": 1, "zone": "b", "event_timestamp": T0},
                {"driver_id": 2, "zone": "b", "event_timestamp": T0},
                {"driver_id": 1, "zone": "a", "event_timestamp": T0},
            ]
        ),
        ["zones:demand"],
        [{"demand": 2.0}, {"demand": None}, {"demand": 1.0}],
    ),
    Case(
        "several views apply their own TTLs",
        [
            (_view("hourly", {"a": "int64"}, ttl="1h"), [[{"driver_id": 1, "E": T0, "a": 1}]]),
            (_view("daily", {"b": "int64"}, ttl="1d"), [[{"driver_id": 1, "E": T0, "b": 2}]]),
            (_view("forever", {"c": "int64"}), [[{"driver_id": 1, "E": T0, "c": 3}]]),
        ],
        _entities(
            [
                {"driver_id": 1, "event_timestamp": T0 + dt.timedelta(minutes=30)},
                {"driver_id": 1, "event_timestamp": T0 + dt.timedelta(hours=2)},
                {"driver_id": 1, "event_timestamp": T0 + dt.timedelta(days=2)},
            ]
        ),
        ["hourly:a", "daily:b", "forever:c"],
        [
            {"a": 1, "b": 2, "c": 3},
            {"a": None, "b": 2, "c": 3},
            {"a": None, "b": None, "c": 3},
        ],
    ),
    Case(
        "entity rows come back in the caller's order, duplicates included",
        [
            (
                PROFILE,
                [
                    [
                        {"driver_id": d, "E": T0 - dt.timedelta(hours=d), "rating": float(d)}
                        for d in (1, 2, 3)
                    ]
                ],
            )
        ],
        _entities(
            [
                {"driver_id": 3, "event_timestamp": T0, "label": "x"},
                {"driver_id": 1, "event_timestamp": T0, "label": "y"},
                {"driver_id": 3, "event_timestamp": T0, "label": "z"},
                {"driver_id": 2, "event_timestamp": T0 - dt.timedelta(days=1), "label": "w"},
                {"driver_id": 1, "event_timestamp": T0, "label": "y"},
            ]
        ),
        ["profile:rating"],
        [{"rating": 3.0}, {"rating": 1.0}, {"rating": 3.0}, {"rating": None}, {"rating": 1.0}],
    ),
    Case(
        "a timestamp without a time zone is UTC",
        [
            (
                PROFILE,
                [
                    [
                        {"driver_id": 1, "E": T0 - dt.timedelta(hours=1), "rating": 1.0},
                        {"driver_id": 1, "E": T0, "rating": 2.0},
                    ]
                ],
            )
        ],
        _entities(
            [
                {"driver_id": 1, "event_timestamp": dt.datetime(2026, 1, 10, 12)},
                {"driver_id": 1, "event_timestamp": dt.datetime(2026, 1, 10, 11, 59, 59)},
            ],
            event_timestamp="datetime64[ns]",
        ),
        ["profile:rating"],
        [{"rating": 2.0}, {"rating": 1.0}],
    ),
    Case(
        "a timestamp in another zone is the same instant",
        [(PROFILE, [[{"driver_id": 1, "E": T0, "rating": 2.0}]])],
        _entities(
            [
                {"driver_id": 1, "event_timestamp": T0},
                {"driver_id": 1, "event_timestamp": T0 - US},
            ],
            event_timestamp="datetime64[us, Europe/Paris]",
        ),
        ["profile:rating"],
        [{"rating": 2.0}, {"rating": None}],
    ),
    Case(
        "nanosecond entity times are compared exactly",
        [
            (
                _view("recent", {"speed": "float64"}, ttl="1h"),
                [[{"driver_id": 1, "E": T0, "speed": 1.5}]],
            )
        ],
        _entities(
            [
                {"driver_id": 1, "event_timestamp": pd.Timestamp(T0) - pd.Timedelta(1, "ns")},
                {"driver_id": 1, "event_timestamp": pd.Timestamp(T0) + pd.Timedelta(1, "h")},
                {
                    "driver_id": 1,
                    "event_timestamp": pd.Timestamp(T0) + pd.Timedelta(3_600_000_000_500, "ns"),
                },
            ]
        ),
        ["recent:speed"],
        [{"speed": None}, {"speed": 1.5}, {"speed": None}],
    ),
    Case(
        "a null key or time matches nothing",
        [(PROFILE, [[{"driver_id": 1, "E": T0, "rating": 2.0}]])],
        _entities(
            [
                {"driver_id": None, "event_timestamp": T0},
                {"driver_id": 1, "event_timestamp": None},
                {"driver_id": 1, "event_timestamp": T0},
            ],
            driver_id="Int64",
        ),
        ["profile:rating"],
        [{"rating": None}, {"rating": None}, {"rating": 2.0}],
    ),
    Case(
        "every value type comes back typed, nulls included",
        [
            (
                _view(
                    "typed",
                    {
                        "trips": "int64",
                        "vehicle": "string",
                        "premium": "bool",
                        "seen": "timestamp",
                        "embedding": "float64_array",
                    },
                ),
                [
                    [
                        {
                            "driver_id": 1,
                            "E": T0,
                            "trips": None,
                            "vehicle": "suv",
                            "premium": True,
                            "seen": T0 - dt.timedelta(days=3),
                            "embedding": [0.5, -1.0],
                        }
                    ]
                ],
            )
        ],
        _entities([{"driver_id": 1, "event_timestamp": T0}]),
        ["typed:trips", "typed:vehicle", "typed:premium", "typed:seen", "typed:embedding"],
        [
            {
                "trips": None,
                "vehicle": "suv",
                "premium": True,
                "seen": T0 - dt.timedelta(days=3),
                "embedding": [0.5, -1.0],
            }
        ],
    ),
    Case(
        "an aggregation's values are taken at step boundaries by the same rule",
        [
            (
                _view("trip-counts", {"trips_1h": "int64"}, ttl="1d", aggregations=True),
                [
                    [
                        {"driver_id": 1, "E": T0, "trips_1h": 2},
                        {"driver_id": 1, "E": T0 + dt.timedelta(minutes=10), "trips_1h": 3},
                        {"driver_id": 1, "E": T0 + dt.timedelta(hours=1), "trips_1h": 0},
                    ]
                ],
            )
        ],
        _entities(
            [
                {"driver_id": 1, "event_timestamp": T0 + dt.timedelta(minutes=19)},
                {"driver_id": 1, "event_timestamp": T0 + dt.timedelta(hours=1)},
            ]
        ),
        ["trip-counts:trips_1h"],
        [{"trips_1h": 3}, {"trips_1h": 0}],
    ),
    Case(
        "an aggregation's TTL counts from the entity's latest event, not from the boundary "
        "where its value last changed",
        [
            (
                _view("trip-counts", {"trips_1h": "int64"}, ttl="1d", aggregations=True),
                [
                    [
                        {"driver_id": 1, "E": T0, "L": T0 - MINUTE, "trips_1h": 1},
                        # The window empties an hour later: known, count 0, same event.
                        {"driver_id": 1, "E": T0 + HOUR, "L": T0 - MINUTE, "trips_1h": 0},
                    ]
                ],
            )
        ],
        _entities(
            [
                {"driver_id": 1, "event_timestamp": T0 + DAY - MINUTE},  # exactly ttl old
                {"driver_id": 1, "event_timestamp": T0 + DAY - MINUTE + US},
                {"driver_id": 1, "event_timestamp": T0 + DAY + HOUR},  # ttl after the row
            ]
        ),
        ["trip-counts:trips_1h"],
        [{"trips_1h": 0}, {"trips_1h": None}, {"trips_1h": None}],
    ),
]


def _features_of(table: pa.Table, case: Case) -> list[dict[str, Any]]:
    names = [reference.partition(":")[2] for reference in case.features]
    rows: list[dict[str, Any]] = table.select(names).to_pylist()
    return rows


@pytest.mark.parametrize("strategy", ["asof", "hash"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_rule(case: Case, strategy: str, s3_prefix: str) -> None:
    store = case.store(s3_prefix)
    settings = duckdb_engine.DuckDBSettings(strategy=strategy)

    pulled = store.get_historical_features(case.entities, case.features, settings=settings)
    result = pulled.to_arrow()

    assert _features_of(result, case) == list(case.expected)
    # The caller's columns come back as given, in front.
    given = pa.Table.from_pandas(case.entities, preserve_index=False)
    assert result.select(given.column_names).equals(given)


@pytest.mark.spark
def test_spark_gives_the_same_rows_on_every_case(spark: SparkSession, s3_prefix: str) -> None:
    for index, case in enumerate(CASES):
        store = case.store(f"{s3_prefix}case-{index}")
        pulled = store.get_historical_features(case.entities, case.features)

        in_spark = pulled.to_spark(spark).toArrow()

        assert _features_of(in_spark, case) == list(case.expected), case.name
        assert in_spark.column_names == list(pulled.columns)


# --- inputs, outputs and services ---------------------------------------------------

TRIPS = _view("trips", {"trips_7d": "int64"}, ttl="7d")
ZONES = _view("zone-demand", {"demand": "float64"}, entities={"zone": "string"})


def _two_views(root: str) -> FeatureStore:
    write_table(
        root,
        TRIPS,
        [[{"driver_id": d, "E": T0 - dt.timedelta(hours=d), "trips_7d": 10 * d} for d in range(5)]],
    )
    write_table(root, ZONES, [[{"zone": "north", "E": T0, "demand": 0.75}]])
    return FeatureStore([TRIPS, ZONES], namespace="rides", offline_uri=root)


ENTITY_ROWS = pd.DataFrame(
    {
        "driver_id": pd.array([4, 0, 2, 9], "int32"),
        "zone": ["north", "south", "north", "north"],
        "event_timestamp": pd.to_datetime([T0, T0, T0 - dt.timedelta(hours=3), T0], utc=True),
    }
)
EXPECTED = {"trips_7d": [40, 0, None, None], "demand": [0.75, None, None, 0.75]}


def test_entity_rows_may_be_pandas_arrow_or_parquet_on_disk_or_on_s3(
    s3_prefix: str, tmp_path: Path
) -> None:
    store = _two_views(s3_prefix)
    features = ["trips:trips_7d", "zone-demand:demand"]
    arrow = pa.Table.from_pandas(ENTITY_ROWS, preserve_index=False)
    on_disk = tmp_path / "entities.parquet"
    pq.write_table(arrow, on_disk)
    bucket, _, prefix = s3_prefix.removeprefix("s3://").partition("/")
    boto3.client("s3").upload_file(str(on_disk), bucket, f"{prefix}entities/part-0.parquet")

    for given in (ENTITY_ROWS, arrow, on_disk, str(on_disk), f"{s3_prefix}entities/"):
        result = store.get_historical_features(given, features).to_pandas()

        assert list(result.columns) == [
            "driver_id",
            "zone",
            "event_timestamp",
            "trips_7d",
            "demand",
        ]
        assert result["trips_7d"].astype("Int64").tolist() == [40, 0, pd.NA, pd.NA], given
        assert result["demand"].tolist()[::3] == [0.75, 0.75], given


def test_chunks_progress_and_parquet_output_give_the_same_rows(
    s3_prefix: str, tmp_path: Path
) -> None:
    store = _two_views(s3_prefix)
    features = ["trips:trips_7d", "zone-demand:demand"]
    whole = store.get_historical_features(ENTITY_ROWS, features).to_arrow()
    settings = duckdb_engine.DuckDBSettings(
        chunk_rows=3, progress=True, progress_after_seconds=0, memory_limit="256MB", threads=1
    )

    pulled = store.get_historical_features(ENTITY_ROWS, features, settings=settings)
    chunks = list(pulled.iter_batches())
    pulled.to_parquet(tmp_path / "training.parquet")
    pulled.to_parquet(f"{s3_prefix}out/training.parquet")

    assert [c.num_rows for c in chunks] == [3, 1]
    assert pa.concat_tables(chunks).equals(whole)
    on_disk = tmp_path / "entities.parquet"
    pq.write_table(pa.Table.from_pandas(ENTITY_ROWS, preserve_index=False), on_disk)
    halves = duckdb_engine.DuckDBSettings(chunk_rows=2)
    from_file = store.get_historical_features(on_disk, features, settings=halves)
    assert [c.num_rows for c in from_file.iter_batches()] == [2, 2]
    assert from_file.to_arrow().equals(whole)
    assert pq.read_table(tmp_path / "training.parquet").equals(whole)
    filesystem, path = duckdb_engine.filesystem(f"{s3_prefix}out/training.parquet")
    assert pq.read_table(path, filesystem=filesystem).equals(whole)


def test_no_entity_rows_give_no_rows_with_typed_columns(s3_prefix: str) -> None:
    store = _two_views(s3_prefix)

    result = store.get_historical_features(ENTITY_ROWS.iloc[:0], ["trips:trips_7d"]).to_arrow()

    assert result.num_rows == 0
    assert result.schema.field("trips_7d").type == pa.int64()


def test_a_feature_service_names_columns_by_prefix_and_computes_transformations(
    s3_prefix: str,
) -> None:
    driver = _view("driver-stats", {"speed_kmh": "float64", "rating": "float64"}, ttl="7d")
    rider = _view("rider-stats", {"rating": "float64"}, entities={"rider_id": "int64"})
    write_table(s3_prefix, driver, [[{"driver_id": 1, "E": T0, "speed_kmh": 30.0, "rating": 4.8}]])
    write_table(s3_prefix, rider, [[{"rider_id": 7, "E": T0, "rating": 4.1}]])
    service = v1alpha1.FeatureService.model_validate(
        {
            "metadata": {"name": "eta", "namespace": "rides"},
            "spec": {
                "owner": "ml",
                "features": [
                    {"featureView": "driver-stats", "prefix": "driver_"},
                    {"featureView": "rider-stats", "prefix": "rider_"},
                ],
                "requestData": [{"name": "distance_km", "type": "float64"}],
                "transformations": [
                    {
                        "name": "eta_min",
                        "type": "float64",
                        "expression": "distance_km / NULLIF(driver_speed_kmh, 0) * 60",
                    },
                    {
                        "name": "rating_gap",
                        "type": "float64",
                        "expression": "driver_rating - rider_rating",
                    },
                ],
            },
        }
    )
    store = FeatureStore([driver, rider, service], namespace="rides", offline_uri=s3_prefix)
    entities = pd.DataFrame(
        {
            "driver_id": [1, 2],
            "rider_id": [7, 7],
            "distance_km": [5.0, 3.0],
            "event_timestamp": pd.to_datetime([T0, T0], utc=True),
        }
    )

    result = store.get_historical_features(entities, feature_service="eta").to_pandas()

    assert list(result.columns) == [
        "driver_id",
        "rider_id",
        "distance_km",
        "event_timestamp",
        "driver_speed_kmh",
        "driver_rating",
        "rider_rating",
        "eta_min",
        "rating_gap",
    ]
    assert result["eta_min"].tolist()[0] == 10.0
    assert result["rating_gap"].round(6).tolist()[0] == 0.7
    assert result["eta_min"].isna().tolist() == [False, True]
    with pytest.raises(plan.EntityFrameError, match="'distance_km', request data"):
        store.get_historical_features(entities.drop(columns="distance_km"), feature_service="eta")


# --- errors -------------------------------------------------------------------------


def test_errors_say_what_to_change(s3_prefix: str) -> None:
    store = _two_views(s3_prefix)

    with pytest.raises(plan.EntityFrameError, match="no column 'zone'"):
        store.get_historical_features(ENTITY_ROWS.drop(columns="zone"), ["zone-demand:demand"])
    with pytest.raises(plan.EntityFrameError, match=r"driver_id.*as int64"):
        store.get_historical_features(ENTITY_ROWS.astype({"driver_id": str}), ["trips:trips_7d"])
    with pytest.raises(plan.EntityFrameError, match="no timestamp column 'ts'"):
        store.get_historical_features(ENTITY_ROWS, ["trips:trips_7d"], timestamp_column="ts")
    with pytest.raises(plan.FeatureViewNotFoundError, match="did you mean 'trips'"):
        store.get_historical_features(ENTITY_ROWS, ["trip:trips_7d"])
    with pytest.raises(plan.FeatureNotFoundError, match="has no feature 'trips_1d'"):
        store.get_historical_features(ENTITY_ROWS, ["trips:trips_1d"])
    with pytest.raises(plan.FeatureServiceNotFoundError, match="no FeatureService rides/eta"):
        store.get_historical_features(ENTITY_ROWS, feature_service="eta")
    with pytest.raises(plan.FeatureReferenceError, match="not both or neither"):
        store.get_historical_features(ENTITY_ROWS)
    missing = _view("never-written", {"x": "int64"})
    lonely = FeatureStore([missing], namespace="rides", offline_uri=s3_prefix)
    with pytest.raises(plan.OfflineStoreError, match="no offline table under"):
        lonely.get_historical_features(ENTITY_ROWS, ["never-written:x"])


def test_a_table_without_a_column_of_the_spec_is_reported(s3_prefix: str) -> None:
    write_table(s3_prefix, TRIPS, [[{"driver_id": 1, "E": T0, "trips_7d": 1}]])
    changed = _view("trips", {"trips_7d": "int64", "trips_30d": "int64"}, ttl="7d")
    store = FeatureStore([changed], namespace="rides", offline_uri=s3_prefix)

    pulled = store.get_historical_features(ENTITY_ROWS, ["trips:trips_30d"])

    with pytest.raises(plan.OfflineStoreError, match="has no column trips_30d"):
        pulled.to_arrow()


# --- where definitions and tables come from -----------------------------------------


def test_a_store_of_files_finds_the_newest_version_of_each_table(s3_prefix: str) -> None:
    write_table(s3_prefix, TRIPS, [[{"driver_id": 1, "E": T0, "trips_7d": 1}]])
    newer = f"{s3_prefix}rides/trips/v2"
    table = deltalake.DeltaTable(f"{s3_prefix}rides/trips/v1").to_pyarrow_table()
    table = table.set_column(0, "driver_id", pa.array([1], pa.int64()))
    table = table.set_column(1, "trips_7d", pa.array([2], pa.int64()))
    deltalake.write_deltalake(newer, table, storage_options=WRITE_OPTIONS)
    store = FeatureStore([TRIPS], namespace="rides", offline_uri=s3_prefix)

    assert store.offline_table("trips") == newer
    result = store.get_historical_features(ENTITY_ROWS.iloc[:1], ["trips:trips_7d"]).to_arrow()
    assert result.column("trips_7d").to_pylist() == [None]  # driver 4 is not in v2


def test_the_examples_directory_is_a_store_to_browse() -> None:
    store = FeatureStore.from_directory(
        Path(__file__).parents[2] / "examples", namespace="rides", offline_uri="s3://x/offline"
    )

    views = [v.metadata.name for v in store.list_feature_views()]
    assert views == [
        "driver-location-live",
        "driver-profile",
        "driver-trip-stats",
        "rider-features",
    ]
    assert [s.metadata.name for s in store.list_feature_services("*")] == [
        "driver-ranking",
        "eta-model",
    ]
    text = store.describe("driver-profile")
    assert "entities:    driver_id (int64)" in text
    assert "ttl:         3d" in text
    assert "vehicle_type" in text
    assert "trips_30m" in store.describe("eta-model")
    with pytest.raises(plan.FeatureViewNotFoundError, match="driver-profile"):
        store.describe("driver-profil")


def test_a_store_of_the_cluster_reads_views_and_their_offline_tables(
    kube_api: kubernetes.client.ApiClient, namespace: str, s3_prefix: str
) -> None:
    view = _view("trips", {"trips_7d": "int64"}, ttl="7d", namespace=namespace)
    uri = write_table(s3_prefix, view, [[{"driver_id": 4, "E": T0, "trips_7d": 12}]])
    custom = kubernetes.client.CustomObjectsApi(kube_api)
    body = view.model_dump(mode="json", by_alias=True, exclude_none=True)
    custom.create_namespaced_custom_object(
        v1alpha1.GROUP, v1alpha1.VERSION, namespace, "featureviews", body
    )
    custom.patch_namespaced_custom_object_status(
        v1alpha1.GROUP,
        v1alpha1.VERSION,
        namespace,
        "featureviews",
        "trips",
        {"status": {"version": 1, "offlineUri": uri}},
    )

    store = FeatureStore.from_cluster(namespace)

    assert [v.metadata.name for v in store.list_feature_views()] == ["trips"]
    assert store.offline_table("trips") == uri
    result = store.get_historical_features(ENTITY_ROWS.iloc[:1], ["trips:trips_7d"]).to_arrow()
    assert result.column("trips_7d").to_pylist() == [12]


# --- generated data against a reference computed here -------------------------------

GENERATED_VIEWS = (
    _view("gen-a", {"x": "float64", "n": "int64"}, ttl="6h"),
    _view("gen-b", {"y": "string"}),
    _view("gen-c", {"z": "float64"}, entities={"driver_id": "int64", "zone": "string"}, ttl="2d"),
)


def _generate(seed: int) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Rows for each generated view and entity rows: few keys and coarse times, so that
    equal event times, exact TTL ages and duplicate entity rows all occur."""
    rng = random.Random(seed)
    start = dt.datetime(2026, 1, 1, tzinfo=UTC)

    def moment() -> dt.datetime:
        return start + dt.timedelta(minutes=30 * rng.randrange(0, 4 * 48))

    rows: dict[str, list[dict[str, Any]]] = {"gen-a": [], "gen-b": [], "gen-c": []}
    for index in range(3000):
        driver, zone, event = rng.randrange(40), rng.choice("pq"), moment()
        created = event + dt.timedelta(seconds=rng.randrange(0, 3) * 600 + index)
        which = rng.choice(["gen-a", "gen-b", "gen-c"])
        row: dict[str, Any] = {"driver_id": driver, "E": event, "C": created}
        if which == "gen-a":
            row.update(x=rng.random(), n=rng.choice([None, rng.randrange(100)]))
        elif which == "gen-b":
            row.update(y=rng.choice(["s", "t", "u", None]))
        else:
            row.update(zone=zone, z=rng.random())
        rows[which].append(row)
    entities = [
        {
            "driver_id": rng.randrange(45),
            "zone": rng.choice("pqr"),
            "event_timestamp": moment() + dt.timedelta(hours=rng.choice([0, 6, 48])),
            "label": rng.random(),
        }
        for _ in range(2000)
    ]
    entities += entities[:100]
    rng.shuffle(entities)
    return rows, entities


def _reference(
    view: v1alpha1.FeatureView, rows: Sequence[Mapping[str, Any]], entity: Mapping[str, Any]
) -> dict[str, Any]:
    """The rule of docs/semantics.md, in plain Python over the raw rows."""
    keys = [e.name for e in view.spec.entities]
    ttl = v1alpha1.parse_duration(view.spec.ttl) if view.spec.ttl else None
    when = entity["event_timestamp"]
    best = None
    for row in rows:
        if any(row[k] != entity[k] for k in keys) or row["E"] > when:
            continue
        if ttl is not None and when - row["E"] > ttl:
            continue
        if best is None or (row["E"], row["C"]) > (best["E"], best["C"]):
            best = row
    return {name: None if best is None else best.get(name) for name in view.spec.feature_names}


def _generated_store(
    root: str, commits: int = 3
) -> tuple[FeatureStore, pd.DataFrame, list[dict[str, Any]]]:
    rows, entities = _generate(seed=11)
    for view in GENERATED_VIEWS:
        batch = rows[view.metadata.name]
        # Several commits, so that files interleave as a job's windows would.
        write_table(root, view, [batch[i::commits] for i in range(commits)])
    expected = []
    for entity in entities:
        answer: dict[str, Any] = {}
        for view in GENERATED_VIEWS:
            answer.update(_reference(view, rows[view.metadata.name], entity))
        expected.append(answer)
    store = FeatureStore(GENERATED_VIEWS, namespace="rides", offline_uri=root)
    return store, pd.DataFrame(entities), expected


GENERATED_FEATURES = ["gen-a:x", "gen-a:n", "gen-b:y", "gen-c:z"]


def test_generated_data_matches_the_reference(s3_prefix: str) -> None:
    store, entities, expected = _generated_store(s3_prefix)

    for strategy in ("auto", "asof", "hash"):
        settings = duckdb_engine.DuckDBSettings(strategy=strategy)
        pulled = store.get_historical_features(entities, GENERATED_FEATURES, settings=settings)

        assert pulled.to_arrow().select(["x", "n", "y", "z"]).to_pylist() == expected, strategy
    assert sum(row["x"] is not None for row in expected) > 200  # the case is not trivial
    # With few entity rows, auto pairs rows by hashing; the answer is the same.
    few = entities.iloc[:40]
    pulled = store.get_historical_features(few, GENERATED_FEATURES)
    assert pulled.to_arrow().select(["x", "n", "y", "z"]).to_pylist() == expected[:40]


@pytest.mark.parametrize("where", ["s3", "disk"])
def test_pairs_counted_in_some_of_many_files_change_no_row(
    where: str, s3_prefix: str, tmp_path: Path
) -> None:
    # Eight commits over four days: 32 files a view, of which auto counts the pairs
    # of few entity rows in every fourth.
    store, entities, expected = _generated_store(
        s3_prefix if where == "s3" else str(tmp_path), commits=8
    )
    few = entities.iloc[:40]
    for strategy in ("auto", "asof"):
        settings = duckdb_engine.DuckDBSettings(strategy=strategy)
        pulled = store.get_historical_features(few, GENERATED_FEATURES, settings=settings)
        assert pulled.to_arrow().select(["x", "n", "y", "z"]).to_pylist() == expected[:40]


@pytest.mark.spark
def test_spark_matches_the_default_path_on_generated_data(
    spark: SparkSession, s3_prefix: str, tmp_path: Path
) -> None:
    store, entities, _ = _generated_store(s3_prefix)
    pulled = store.get_historical_features(entities, GENERATED_FEATURES)
    default = pulled.to_arrow()

    from_pandas = pulled.to_spark(spark).toArrow()
    arrow = pa.Table.from_pandas(entities, preserve_index=False)
    frame = spark.createDataFrame(arrow)
    from_spark = store.get_historical_features(frame, GENERATED_FEATURES).to_arrow()
    # Spark reads parquet in its own order; the rows still come back in the file's.
    on_disk = tmp_path / "entities.parquet"
    # Spark 4 refuses nanosecond parquet timestamps: microseconds, as the layout has them.
    pq.write_table(arrow, on_disk, row_group_size=500, coerce_timestamps="us")
    from_file = store.get_historical_features(on_disk, GENERATED_FEATURES).to_spark(spark)

    columns = ["driver_id", "zone", "label", "x", "n", "y", "z"]
    assert from_pandas.select(columns).equals(default.select(columns))
    assert from_spark.select(columns).equals(default.select(columns))
    assert from_file.toArrow().select(columns).equals(default.select(columns))
    assert (
        from_spark.column("event_timestamp").to_pylist()
        == default.column("event_timestamp").to_pylist()
    )
