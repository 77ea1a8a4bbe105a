from __future__ import annotations

import importlib.util
from pathlib import Path

from featurekube import spark_session
from featurekube.spark_session import SparkSettings, render_spark_conf


def test_an_endpoint_from_the_environment_configures_s3a_path_style() -> None:
    conf = render_spark_conf(
        SparkSettings(), {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "AWS_REGION": "eu-west-1"}
    )

    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:5000"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"
    assert conf["spark.hadoop.fs.s3a.endpoint.region"] == "eu-west-1"


def test_the_s3_specific_endpoint_wins_over_the_general_one() -> None:
    conf = render_spark_conf(
        SparkSettings(),
        {"AWS_ENDPOINT_URL": "http://general:1", "AWS_ENDPOINT_URL_S3": "https://s3.example:443"},
    )

    assert conf["spark.hadoop.fs.s3a.endpoint"] == "https://s3.example:443"
    assert conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "true"


def test_without_an_endpoint_s3a_reaches_aws_itself() -> None:
    conf = render_spark_conf(SparkSettings(), {})

    assert not any(k.startswith("spark.hadoop.fs.s3a.endpoint") for k in conf)
    assert "spark.hadoop.fs.s3a.path.style.access" not in conf
    assert conf["spark.hadoop.fs.s3.impl"] == "org.apache.hadoop.fs.s3a.S3AFileSystem"


def test_sessions_run_in_utc_with_delta_and_extra_conf_applied_last() -> None:
    conf = render_spark_conf(SparkSettings(extra_conf={"spark.sql.shuffle.partitions": "1"}), {})

    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert conf["spark.sql.shuffle.partitions"] == "1"
    assert conf["spark.driver.bindAddress"] == "127.0.0.1"


def test_hadoop_aws_matches_the_hadoop_that_pyspark_bundles() -> None:
    spec = importlib.util.find_spec("pyspark")
    assert spec is not None and spec.origin is not None
    jars = Path(spec.origin).parent / "jars"
    bundled = sorted(p.name for p in jars.glob("hadoop-client-api-*.jar"))

    assert bundled == [f"hadoop-client-api-{spark_session.HADOOP_VERSION}.jar"]


def test_delta_matches_the_installed_delta_spark() -> None:
    from importlib.metadata import version

    assert version("delta-spark") == spark_session.DELTA_VERSION
    assert version("pyspark").startswith("4.2.")
