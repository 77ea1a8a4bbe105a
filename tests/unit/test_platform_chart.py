"""The chart's values for the local platform's node, and examples fitted to its two
cores (featurekube._platform.chart): pure builders, checked without a cluster."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from featurekube import errors
from featurekube._platform import chart
from featurekube._platform.platform import Endpoints

REPO = Path(__file__).resolve().parents[2]


def _endpoints(node: str = "featurekube-node") -> Endpoints:
    return Endpoints(
        kubeconfig=Path("/state/kubeconfig"),
        kubeconfig_unprivileged=Path("/state/kubeconfig-unprivileged"),
        apiserver_url="https://10.250.0.1:6443",
        aws_endpoint_url="http://10.250.0.1:5000",
        region="eu-west-1",
        pids={},
        log_dir=Path("/state/logs"),
        node=node,
    )


def test_the_node_values_point_the_operator_at_its_namespace_and_at_moto_where_pods_reach_it() -> (
    None
):
    values = chart.node_values(
        _endpoints(), "rides", offline_uri="s3://b/offline", table_prefix="fk-rides."
    )

    assert values["operator"]["watchNamespaces"] == ["rides"]
    assert values["store"] == {"offlineUri": "s3://b/offline", "tablePrefix": "fk-rides."}
    assert values["aws"]["endpointUrl"] == "http://10.250.0.1:5000"
    assert values["aws"]["region"] == "eu-west-1"
    assert values["featureServer"] == {
        "auth": "tokenreview",
        "tls": {"secretName": "featurekube-serving-tls"},
    }
    # A driver and its executors fit beside the operator and the servers on two cores.
    conf = values["spark"]["conf"]
    assert conf["spark.kubernetes.driver.request.cores"] == "100m"
    assert conf["spark.kubernetes.executor.request.cores"] == "100m"
    # Every key is one the chart has (its schema refuses others at install).
    defaults = yaml.safe_load((REPO / "charts" / "featurekube" / "values.yaml").read_text())
    assert set(values) <= set(defaults)
    for key, value in values.items():
        if isinstance(value, dict):
            assert set(value) <= set(defaults[key]), key


def test_the_node_values_point_the_operators_brokers_at_kafka_where_pods_reach_it() -> None:
    with_kafka = dataclasses.replace(
        _endpoints(),
        kafka_bootstrap_servers="127.0.0.1:39092",
        kafka_pods_bootstrap_servers="10.250.0.1:39094",
    )

    values = chart.node_values(with_kafka, "rides", offline_uri="s3://b/o", table_prefix="p.")
    without = chart.node_values(_endpoints(), "rides", offline_uri="s3://b/o", table_prefix="p.")

    # The pods' listener, never the machine's loopback one, which no pod reaches.
    assert values["kafka"] == {"bootstrapServers": "10.250.0.1:39094"}
    defaults = yaml.safe_load((REPO / "charts" / "featurekube" / "values.yaml").read_text())
    assert set(values["kafka"]) <= set(defaults["kafka"])
    # A platform without Kafka leaves the chart's own setting (none) alone.
    assert "kafka" not in without


def test_plaintext_servers_without_token_review_are_asked_for_explicitly() -> None:
    values = chart.node_values(
        _endpoints(),
        "rides",
        offline_uri="s3://b/o",
        table_prefix="p.",
        server_auth="none",
        tls_secret="",
    )

    assert values["featureServer"] == {"auth": "none", "tls": {"secretName": ""}}


def test_values_for_a_platform_without_a_node_are_refused() -> None:
    with pytest.raises(errors.PlatformError, match="runs no node: `featurekube dev up --node`"):
        chart.node_values(_endpoints(node=""), "rides", offline_uri="s3://b/o", table_prefix="p.")


def test_an_example_server_is_fitted_to_the_node_and_views_are_left_alone() -> None:
    service: dict[str, Any] = yaml.safe_load((REPO / "examples" / "eta-model.yaml").read_text())
    view: dict[str, Any] = yaml.safe_load((REPO / "examples" / "driver-profile.yaml").read_text())

    fitted = chart.fit_to_node(service)

    server = fitted["spec"]["server"]
    assert server["replicas"] == 1
    assert server["resources"]["requests"]["cpu"] == "100m"
    assert "autoscaling" not in server and "podDisruptionBudget" not in server
    assert server["serviceAccountName"] == service["spec"]["server"]["serviceAccountName"]
    assert service["spec"]["server"]["replicas"] == 3, "the example is left as it was"
    assert chart.fit_to_node(view) == view
