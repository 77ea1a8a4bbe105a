"""The streaming SparkApplication a view version gets, and what its state means; pure."""

from __future__ import annotations

import datetime as dt
import doctest
from typing import Any

from featurekube.materialize import stream_plan
from featurekube.spec import v1alpha1
from featurekube_operator import naming, streams
from featurekube_operator.settings import OperatorSettings
from support import stream_view

UTC = dt.UTC
SINCE = dt.datetime(2026, 3, 1, 8, tzinfo=UTC)
NOW = SINCE + dt.timedelta(minutes=30)
OWNER = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureView",
    "metadata": {"name": "driver-trips", "uid": "u-1"},
}


def _view(**kafka: Any) -> v1alpha1.FeatureView:
    return v1alpha1.FeatureView.model_validate(stream_view(**kafka))


def test_the_doctests_hold() -> None:
    assert doctest.testmod(streams).failed == 0


def test_a_version_gets_one_long_running_application_restarted_whatever_stops_it() -> None:
    settings = OperatorSettings(
        offline_uri="s3://lake/offline", kafka_bootstrap_servers="kafka.infra:9092"
    )

    app = streams.render_stream_application(_view(), 2, SINCE, settings, OWNER)

    assert app["metadata"]["name"] == "driver-trips-v2-stream"
    assert app["metadata"]["labels"] == {
        streams.LABEL_STREAM_OF: "driver-trips",
        naming.LABEL_VERSION: "2",
    }
    assert naming.LABEL_FEATURE_VIEW not in app["metadata"]["labels"], "not a window's run"
    assert app["metadata"]["annotations"] == {streams.ANNOTATION_SINCE: "2026-03-01T08:00:00Z"}
    assert app["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    spec = app["spec"]
    assert spec["restartPolicy"] == {
        "type": "Always",
        "onFailureRetryInterval": 10,
        "onSubmissionFailureRetryInterval": 10,
    }
    assert spec["mainApplicationFile"] == "local:///opt/featurekube/stream.py"
    assert spec["arguments"] == [
        "--spec",
        "/etc/featurekube/spec/featureview.yaml",
        "--since",
        "2026-03-01T08:00:00Z",
        "--version",
        "2",
        "--offline-uri",
        "s3://lake/offline/rides/driver-trips/v2",
        "--online-table",
        naming.online_table(settings, "rides", "driver-trips", 2),
        "--bootstrap-servers",
        "kafka.infra:9092",
    ]
    assert spec["driver"]["configMaps"] == [
        {"name": "driver-trips-v2-job", "path": "/etc/featurekube/spec"}
    ]
    assert spec["driver"]["securityContext"]["allowPrivilegeEscalation"] is False
    assert "volumes" not in spec


def test_kafka_tls_and_sasl_reach_driver_and_executors_from_their_secrets() -> None:
    settings = OperatorSettings(
        kafka_bootstrap_servers="kafka:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_secret="kafka-user",
        kafka_sasl_dir="/etc/kafka-sasl",
        kafka_tls_ca_secret="kafka-ca",
    )

    app = streams.render_stream_application(_view(), 1, SINCE, settings, OWNER)

    for pod in ("driver", "executor"):
        env = {e["name"]: e for e in app["spec"][pod]["env"]}
        names = stream_plan.KAFKA_ENV
        assert env[names["protocol"]]["value"] == "SASL_SSL"
        assert env[names["mechanism"]]["value"] == "SCRAM-SHA-512"
        assert env[names["password"]]["valueFrom"] == {
            "secretKeyRef": {"name": "kafka-user", "key": "password"}
        }
        assert env[names["ca_file"]]["value"] == "/etc/featurekube/kafka-ca/ca.crt"
        assert app["spec"][pod]["volumeMounts"][0]["mountPath"] == streams.KAFKA_CA_MOUNT
    assert app["spec"]["volumes"] == [{"name": "kafka-ca", "secret": {"secretName": "kafka-ca"}}]
    # The client options the job derives from that env.
    options = stream_plan.kafka_client_options(
        {
            names["protocol"]: "SASL_SSL",
            names["mechanism"]: "SCRAM-SHA-512",
            names["ca_file"]: "/etc/featurekube/kafka-ca/ca.crt",
        }
    )
    assert options["kafka.ssl.truststore.location"] == "/etc/featurekube/kafka-ca/ca.crt"


def test_the_split_is_a_schedule_tick_never_before_the_first_window() -> None:
    first = dt.datetime(2026, 3, 1, 8, 40, tzinfo=UTC)
    assert streams.stream_since("@hourly", first, NOW) == first
    assert streams.stream_since("*/10 * * * *", SINCE, NOW) == NOW
    assert streams.stream_since("@daily", SINCE - dt.timedelta(days=9), NOW) == dt.datetime(
        2026, 3, 1, tzinfo=UTC
    )


def test_a_recorded_start_wins_over_a_new_one() -> None:
    app = {"metadata": {"annotations": {streams.ANNOTATION_SINCE: "2026-03-01T07:00:00Z"}}}
    status = {"streams": [{"version": 1, "since": "2026-03-01T06:00:00Z"}]}

    assert streams.read_since(app, status, 1) == SINCE - dt.timedelta(hours=1)
    assert streams.read_since(None, status, 1) == SINCE - dt.timedelta(hours=2)
    assert streams.read_since(None, status, 2) is None
    assert (
        streams.read_since({"metadata": {"annotations": {streams.ANNOTATION_SINCE: "x"}}}, {}, 1)
        is None
    )


def _app(state: str, error: str = "") -> dict[str, Any]:
    return {
        "metadata": {"name": "driver-trips-v1-stream"},
        "status": {"applicationState": {"state": state, "errorMessage": error}},
    }


def test_the_streaming_condition_follows_the_application_and_its_reports() -> None:
    fresh = stream_plan.StreamProgress(
        updated_at="2026-03-01T08:29:00.000000Z",
        consumer_lag=4,
        dead_letters=2,
        latency_p50_seconds=1.23456,
        last_event_time="2026-03-01T08:28:59.000000Z",
    )
    stale = stream_plan.StreamProgress(updated_at="2026-03-01T08:00:00.000000Z")

    running = streams.stream_state(1, SINCE, _app("RUNNING"), fresh, NOW)
    assert running.state == "Running"
    assert streams.stream_condition([running]).status is True
    assert streams.render_stream_status(running) == {
        "version": 1,
        "since": "2026-03-01T08:00:00Z",
        "application": "driver-trips-v1-stream",
        "state": "Running",
        "consumerLag": 4,
        "lastEventTime": "2026-03-01T08:28:59.000000Z",
        "latencySeconds": 1.235,
        "deadLetters": 2,
        "reportedAt": "2026-03-01T08:29:00.000000Z",
    }
    assert streams.stream_state(1, SINCE, _app("RUNNING"), stale, NOW).state == "Starting"
    assert streams.stream_state(1, SINCE, None, None, NOW).state == "Starting"
    failing = streams.stream_state(1, SINCE, _app("FAILING", "driver OOMKilled"), fresh, NOW)
    assert failing.state == "Restarting" and "driver OOMKilled" in failing.message
    condition = streams.stream_condition([running, failing])
    assert (condition.status, condition.reason) == (False, "Restarting")
    assert streams.stream_condition([]).reason == "NoStream"
    # What the status says passes the status model.
    v1alpha1.StreamStatus.model_validate(streams.render_stream_status(running))
