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


def test_jars_resolved_before_replace_the_resolver(tmp_path: Path) -> None:
    jars = tmp_path / "jars"
    jars.mkdir()
    for name in ("delta.jar", "hadoop-aws.jar"):
        (jars / name).write_bytes(b"PK")
    resolved = [f"file://{jars / 'delta.jar'}", f"file://{jars / 'hadoop-aws.jar'}"]
    assert spark_session.resolved_jars(tmp_path) == ()

    # What Spark lists in spark.jars besides the resolved packages is not recorded.
    spark_session.record_resolved_jars(tmp_path, [*resolved, "file:///elsewhere/app.jar", ""])

    found = spark_session.resolved_jars(tmp_path)
    assert found == tuple(resolved)
    conf = render_spark_conf(SparkSettings(jars=found), {})
    assert conf["spark.jars"] == ",".join(resolved)
    assert "spark.jars.packages" not in conf and "spark.jars.ivy" not in conf


def test_without_resolved_jars_the_packages_are_resolved(tmp_path: Path) -> None:
    conf = render_spark_conf(SparkSettings(ivy_dir=tmp_path), {})

    assert conf["spark.jars.packages"] == ",".join(spark_session.SPARK_PACKAGES)
    assert conf["spark.jars.ivy"] == str(tmp_path)
    assert "spark.jars" not in conf


def test_a_recorded_jar_that_is_gone_sends_the_session_back_to_the_resolver(
    tmp_path: Path,
) -> None:
    jars = tmp_path / "jars"
    jars.mkdir()
    (jars / "delta.jar").write_bytes(b"PK")
    spark_session.record_resolved_jars(tmp_path, [str(jars / "delta.jar")])
    assert spark_session.resolved_jars(tmp_path) == (str(jars / "delta.jar"),)

    (jars / "delta.jar").unlink()

    assert spark_session.resolved_jars(tmp_path) == ()
