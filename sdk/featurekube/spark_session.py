"""One way to make a SparkSession that reaches featurekube's stores.

The configuration is a pure function of settings and environment
(:func:`render_spark_conf`); :func:`create_session` is the only place pyspark is
imported. S3 is reached through Hadoop's S3A connector, for ``s3://`` and ``s3a://``
URIs alike, with the endpoint and credentials the standard AWS variables give
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...), so the same code runs against AWS
and against the local platform. Tables are Delta Lake tables. Kafka topics are read
with Spark's own Kafka source (``format("kafka")``), in batch and in Structured
Streaming.

Jars come from Maven Central through Spark's own resolver (Ivy) into a cache outside
the work tree; the first session on a machine downloads them, later ones do not. The
first session also records the jar files it resolved (a list beside the cache, named
after :data:`SPARK_PACKAGES`), and later local sessions load those files directly:
resolving again, though nothing is downloaded, costs seconds of every start.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "DELTA_VERSION",
    "HADOOP_VERSION",
    "SPARK_PACKAGES",
    "SPARK_VERSION",
    "SparkSettings",
    "create_session",
    "record_resolved_jars",
    "render_spark_conf",
    "resolved_jars",
]

# Must match the Hadoop that pyspark bundles (jars/hadoop-client-api-*.jar): S3A is
# part of Hadoop and is not compatible across its versions. A unit test checks this.
HADOOP_VERSION = "3.5.0"
# Delta publishes one artifact per Spark minor version: delta-spark_<spark>_<scala>.
DELTA_VERSION = "4.4.0"
# pyspark's version (a unit test checks it): Spark's own connectors are released with it.
SPARK_VERSION = "4.2.0"
SPARK_PACKAGES = (
    f"io.delta:delta-spark_4.2_2.13:{DELTA_VERSION}",
    f"org.apache.hadoop:hadoop-aws:{HADOOP_VERSION}",
    # Brings kafka-clients and spark-token-provider-kafka-0-10 (delegation tokens) along.
    f"org.apache.spark:spark-sql-kafka-0-10_2.13:{SPARK_VERSION}",
)
"""The Maven packages every Spark session of featurekube loads, with their
dependencies: Delta Lake, the S3A connector and the Kafka source. The Spark image
(``images/images.yaml``) resolves the same list."""


def _default_ivy_dir() -> Path:
    env = os.environ.get("FEATUREKUBE_CACHE")
    root = Path(env) if env else Path.home() / ".cache" / "featurekube"
    return root / "ivy"


@dataclass(frozen=True)
class SparkSettings:
    """How to run Spark; the defaults suit local mode on a small machine."""

    app_name: str = "featurekube"
    master: str = "local[2]"
    """Spark master URL; ``local[N]`` runs in this process's JVM with N threads."""
    driver_memory: str = "2g"
    """JVM heap of the driver (in local mode, of everything)."""
    shuffle_partitions: int = 4
    """``spark.sql.shuffle.partitions``; Spark's default of 200 is far too many locally."""
    ivy_dir: Path = field(default_factory=_default_ivy_dir)
    """Where Spark's resolver caches jars: ``$FEATUREKUBE_CACHE/ivy``, else
    ``~/.cache/featurekube/ivy``."""
    ui: bool = False
    """Start Spark's web UI (port 4040 onwards)."""
    python: str = field(default_factory=lambda: sys.executable)
    """The Python of Spark's Python workers in local mode: this one, which has
    featurekube and pyarrow, not whatever ``python3`` is first on the PATH."""
    jars: tuple[str, ...] = ()
    """Jar files (paths or ``file:`` URIs) of :data:`SPARK_PACKAGES` and their
    dependencies, resolved before (:func:`resolved_jars`): loaded as they are
    (``spark.jars``), skipping Spark's resolver. Empty: resolved from Maven
    (``spark.jars.packages``)."""
    extra_conf: Mapping[str, str] = field(default_factory=dict)
    """Anything else, applied last."""


def render_spark_conf(settings: SparkSettings, environ: Mapping[str, str]) -> dict[str, str]:
    """The Spark configuration for ``settings``, with S3 reached as ``environ`` says.

    >>> conf = render_spark_conf(SparkSettings(), {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"})
    >>> conf["spark.hadoop.fs.s3a.endpoint"], conf["spark.hadoop.fs.s3a.path.style.access"]
    ('http://127.0.0.1:5000', 'true')
    """
    conf = {
        "spark.app.name": settings.app_name,
        "spark.master": settings.master,
        "spark.driver.memory": settings.driver_memory,
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        "spark.ui.enabled": str(settings.ui).lower(),
        # featurekube's semantics are in UTC; never the machine's zone.
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
    }
    if settings.jars:
        conf["spark.jars"] = ",".join(settings.jars)
    else:
        conf["spark.jars.packages"] = ",".join(SPARK_PACKAGES)
        conf["spark.jars.ivy"] = str(settings.ivy_dir)
    if settings.master.startswith("local"):
        # Local mode listens on loopback only, whatever the host name resolves to.
        conf["spark.driver.host"] = "127.0.0.1"
        conf["spark.driver.bindAddress"] = "127.0.0.1"
        conf["spark.pyspark.python"] = settings.python
        # Delta reads its log in 50 tasks by default: far too many for a few cores.
        conf["spark.databricks.delta.snapshotPartitions"] = "4"
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if region:
        conf["spark.hadoop.fs.s3a.endpoint.region"] = region
    endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        # An S3-compatible endpoint (moto, MinIO) serves buckets by path, not by host.
        conf["spark.hadoop.fs.s3a.endpoint"] = endpoint
        conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(
            endpoint.startswith("https://")
        ).lower()
    conf.update(settings.extra_conf)
    return conf


def create_session(settings: SparkSettings | None = None) -> SparkSession:
    """Get or create the process's SparkSession, configured by :func:`render_spark_conf`,
    loading the jars an earlier session resolved when they are all still there."""
    from featurekube import _deps

    sql = _deps.import_optional("pyspark.sql", extra="spark")
    settings = settings or SparkSettings()
    if not settings.jars and settings.master.startswith("local"):
        settings = dataclasses.replace(settings, jars=resolved_jars(settings.ivy_dir))
    builder = sql.SparkSession.builder
    for key, value in render_spark_conf(settings, os.environ).items():
        builder = builder.config(key, value)
    session: SparkSession = builder.getOrCreate()
    if not settings.jars and settings.master.startswith("local"):
        jars = session.conf.get("spark.jars", "") or ""
        record_resolved_jars(settings.ivy_dir, jars.split(","))
    return session


def _manifest(ivy_dir: Path) -> Path:
    digest = hashlib.sha256(",".join(SPARK_PACKAGES).encode()).hexdigest()[:16]
    return ivy_dir / f"featurekube-jars-{digest}.txt"


def _local_path(jar: str) -> Path:
    return Path(jar.removeprefix("file://") if jar.startswith("file://") else jar)


def resolved_jars(ivy_dir: Path) -> tuple[str, ...]:
    """The jar files a session resolved for :data:`SPARK_PACKAGES` into ``ivy_dir``
    (:func:`record_resolved_jars`); empty when none were recorded or one is gone."""
    try:
        jars = tuple(line for line in _manifest(ivy_dir).read_text().splitlines() if line)
    except OSError:
        return ()
    if not jars or not all(_local_path(jar).is_file() for jar in jars):
        return ()
    return jars


def record_resolved_jars(ivy_dir: Path, jars: Sequence[str]) -> None:
    """Record the jar files Spark's resolver fetched into ``ivy_dir`` for
    :data:`SPARK_PACKAGES`, for :func:`resolved_jars`; written whole or not at all."""
    cache = (ivy_dir / "jars").resolve()
    mine = [jar for jar in jars if jar and _local_path(jar).resolve().parent == cache]
    if not mine:
        return
    target = _manifest(ivy_dir)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    try:
        partial.write_text("".join(f"{jar}\n" for jar in mine))
        partial.replace(target)
    except OSError:
        partial.unlink(missing_ok=True)
