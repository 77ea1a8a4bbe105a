from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from featurekube.spec import v1alpha1
from featurekube.writer.online import PendingWindow
from featurekube_operator import conditions, desired, naming
from featurekube_operator.settings import OperatorSettings
from featurekube_operator.windows import Window

SETTINGS = OperatorSettings(offline_uri="s3://lake/offline/", table_prefix="fk.")
OWNER = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureView",
    "metadata": {"name": "driver-trip-stats", "uid": "u-1"},
}
VIEW_DOC: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureView",
    "metadata": {"name": "driver-trip-stats", "namespace": "rides", "generation": 4},
    "spec": {
        "owner": "eta",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"batch": {"path": "s3://raw-data/trips/"}},
        "aggregations": [
            {"name": "trips_1d", "column": "trip_id", "function": "count", "window": "1d"}
        ],
        "aggregationInterval": "1h",
    },
}
VIEW = v1alpha1.FeatureView.model_validate(VIEW_DOC)
WINDOW = Window(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 2, tzinfo=dt.UTC))


def _with(**spec: Any) -> v1alpha1.FeatureView:
    doc = copy.deepcopy(VIEW_DOC)
    doc["spec"].update(spec)
    return v1alpha1.FeatureView.model_validate(doc)


def test_names_of_tables_paths_and_jobs() -> None:
    assert (
        naming.online_table(SETTINGS, "rides", "driver-trip-stats", 2)
        == "fk.rides.driver-trip-stats.v2"
    )
    assert (
        naming.offline_uri(SETTINGS, "rides", "driver-trip-stats", 2)
        == "s3://lake/offline/rides/driver-trip-stats/v2"
    )
    assert (
        naming.spark_application_name("driver-trip-stats", 2, WINDOW)
        == "driver-trip-stats-v2-202601010000"
    )


def test_only_data_changes_change_the_fingerprint() -> None:
    base = naming.data_fingerprint(VIEW.spec)

    assert naming.data_fingerprint(_with(description="new words", owner="other").spec) == base
    assert naming.data_fingerprint(_with(materialization={"schedule": "@daily"}).spec) == base
    assert naming.data_fingerprint(_with(aggregationInterval="30m").spec) != base
    assert (
        naming.data_fingerprint(_with(entities=[{"name": "driver_id", "type": "string"}]).spec)
        != base
    )
    # Server defaults do not count as a change.
    explicit = _with(source={"batch": {"path": "s3://raw-data/trips/", "format": "parquet"}})
    assert naming.data_fingerprint(explicit.spec) == base


def test_the_spark_application_carries_its_window_version_and_owner() -> None:
    app = desired.render_spark_application(VIEW, 2, WINDOW, SETTINGS, OWNER)

    assert app["metadata"]["name"] == "driver-trip-stats-v2-202601010000"
    assert app["metadata"]["namespace"] == "rides"
    assert app["metadata"]["labels"] == {
        naming.LABEL_FEATURE_VIEW: "driver-trip-stats",
        naming.LABEL_VERSION: "2",
    }
    assert app["metadata"]["annotations"][naming.ANNOTATION_WINDOW_START] == "2026-01-01T00:00:00Z"
    assert app["metadata"]["annotations"][naming.ANNOTATION_GENERATION] == "4"
    assert app["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    args = app["spec"]["arguments"]
    assert args[args.index("--end") + 1] == "2026-01-02T00:00:00Z"
    assert args[args.index("--online-table") + 1] == "fk.rides.driver-trip-stats.v2"
    assert app["spec"]["driver"]["configMaps"] == [
        {"name": "driver-trip-stats-v2-job", "path": desired.SPEC_MOUNT}
    ]
    assert app["spec"]["restartPolicy"] == {"type": "Never"}


def test_the_snapshot_is_immutable_and_records_where_the_data_goes() -> None:
    snapshot = desired.render_snapshot(VIEW, 2, SETTINGS, OWNER)

    assert snapshot["immutable"] is True
    assert snapshot["metadata"]["labels"][naming.LABEL_FINGERPRINT] == naming.data_fingerprint(
        VIEW.spec
    )
    assert "fk.rides.driver-trip-stats.v2" in snapshot["data"][desired.SNAPSHOT_KEY]


SERVICE = v1alpha1.FeatureService.model_validate(
    {
        "apiVersion": "featurekube.dev/v1alpha1",
        "kind": "FeatureService",
        "metadata": {"name": "eta-model", "namespace": "rides"},
        "spec": {
            "owner": "eta",
            "features": [{"featureView": "driver-trip-stats", "prefix": "driver_"}],
            "server": {
                "autoscaling": {"minReplicas": 2, "maxReplicas": 4},
                "podDisruptionBudget": {},
            },
        },
    }
)
SERVICE_OWNER = {**OWNER, "kind": "FeatureService", "metadata": {"name": "eta-model", "uid": "u-2"}}


def _plan(table: str) -> dict[str, Any]:
    resolved = desired.ResolvedView(VIEW, table, ["trips_1d"], "driver_")
    return desired.render_serving_plan(SERVICE, [resolved])


def test_the_serving_plan_names_features_types_and_tables() -> None:
    plan = _plan("fk.rides.driver-trip-stats.v1")

    (view,) = plan["featureViews"]
    assert view["onlineTable"] == "fk.rides.driver-trip-stats.v1"
    assert view["features"] == [{"name": "driver_trips_1d", "source": "trips_1d", "type": "int64"}]
    assert view["entities"] == [{"name": "driver_id", "type": "int64"}]
    assert view["storedFeatures"] == ["trips_1d"]  # every feature of the view, served or not


def test_a_plan_change_rolls_the_pods_and_replicas_are_left_to_the_autoscaler() -> None:
    one = desired.render_deployment(SERVICE, _plan("t.v1"), SETTINGS, SERVICE_OWNER)
    two = desired.render_deployment(SERVICE, _plan("t.v2"), SETTINGS, SERVICE_OWNER)

    def hash_of(deployment: dict[str, Any]) -> str:
        return str(
            deployment["spec"]["template"]["metadata"]["annotations"][naming.ANNOTATION_PLAN_HASH]
        )

    assert hash_of(one) != hash_of(two)
    assert "replicas" not in one["spec"]
    assert desired.render_hpa(SERVICE, SERVICE_OWNER)["spec"]["maxReplicas"] == 4  # type: ignore[index]
    assert desired.render_pdb(SERVICE, SERVICE_OWNER)["spec"]["minAvailable"] == 1  # type: ignore[index]
    container = one["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_condition_times_change_only_on_transitions() -> None:
    t1, t2 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    first = conditions.merge_conditions(
        None, [conditions.Condition("Ready", False, "Backfilling", "")], t1, 1
    )
    same = conditions.merge_conditions(
        first, [conditions.Condition("Ready", False, "Backfilling", "x")], t2, 1
    )
    flipped = conditions.merge_conditions(
        same, [conditions.Condition("Ready", True, "Serving", "")], t2, 2
    )

    assert same[0]["lastTransitionTime"] == first[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert flipped[0]["lastTransitionTime"] == "2026-01-02T00:00:00Z"
    assert conditions.transitions(first, same) == []
    assert [c["type"] for c in conditions.transitions(same, flipped)] == ["Ready"]


def test_the_python_job_runs_the_same_job_as_the_spark_application() -> None:
    """Same name, labels, annotations and arguments (plus --engine python), so progress
    and collection treat both kinds alike."""
    app = desired.render_spark_application(VIEW, 2, WINDOW, SETTINGS, OWNER, 3, "ab12")
    job = desired.render_materialize_job(VIEW, 2, WINDOW, SETTINGS, OWNER, 3, "ab12")

    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert job["metadata"] == app["metadata"]
    assert job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    assert job["spec"]["template"]["metadata"]["labels"] == app["metadata"]["labels"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"] == desired.RESTRICTED_POD
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == SETTINGS.spark_service_account
    (container,) = pod["containers"]
    assert container["command"] == [desired.JOB_PYTHON, "-m", "featurekube.materialize"]
    assert container["args"] == [*app["spec"]["arguments"], "--engine", "python"]
    assert container["image"] == SETTINGS.spark_image
    assert container["env"] == app["spec"]["driver"]["env"]
    assert container["securityContext"] == desired.RESTRICTED_CONTAINER
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "4Gi"},
        "limits": {"memory": "4Gi"},
    }
    # The job-spec ConfigMap, where the SparkApplication's driver has it.
    (mount,) = container["volumeMounts"]
    (volume,) = pod["volumes"]
    assert mount["mountPath"] == desired.SPEC_MOUNT and volume["name"] == mount["name"]
    assert volume["configMap"]["name"] == app["spec"]["driver"]["configMaps"][0]["name"]


def test_a_pending_record_the_operator_wrote_is_handed_to_the_job() -> None:
    """The job takes the record over rather than writing its own: its settle time has
    passed while the pod started."""
    launched = PendingWindow(WINDOW.start, WINDOW.end, "a" * 32, "b" * 32)
    first = PendingWindow(WINDOW.start, WINDOW.end, "c" * 32, None)

    app = desired.render_spark_application(
        VIEW, 2, WINDOW, SETTINGS, OWNER, 3, "ab12", pending=launched
    )
    job = desired.render_materialize_job(VIEW, 2, WINDOW, SETTINGS, OWNER, 3, "", pending=first)
    offline_only = desired.render_materialize_job(
        _with(materialization={"online": False}), 2, WINDOW, SETTINGS, OWNER, pending=first
    )
    left_to_the_job = desired.render_materialize_job(VIEW, 2, WINDOW, SETTINGS, OWNER)

    assert app["spec"]["arguments"][-4:] == [
        "--pending-run", "a" * 32, "--pending-superseded", "b" * 32,
    ]  # fmt: skip
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"][-4:] == ["--pending-run", "c" * 32, "--engine", "python"]
    # A job that writes no online table has no record to take over.
    for body in (offline_only, left_to_the_job):
        (container,) = body["spec"]["template"]["spec"]["containers"]
        assert not any(arg.startswith("--pending") for arg in container["args"])


def test_the_python_job_takes_its_image_and_resources_from_settings() -> None:
    settings = OperatorSettings(
        python_image="registry.example/fk-python:1",
        python_cpu="500m",
        python_memory="1Gi",
    )
    job = desired.render_materialize_job(
        _with(materialization={"online": False}), 1, WINDOW, settings, OWNER
    )

    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example/fk-python:1"
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert "--no-online" in container["args"]


def test_spark_applications_leave_out_the_driver_network_policy_the_operator_may_not_create() -> (
    None
):
    app = desired.render_spark_application(VIEW, 2, WINDOW, SETTINGS, OWNER)
    conf = app["spec"]["sparkConf"]

    assert conf["spark.kubernetes.driver.pod.excludedFeatureSteps"] == (
        "org.apache.spark.deploy.k8s.features.NetworkPolicyFeatureStep"
    )
    assert conf["spark.sql.session.timeZone"] == "UTC"
    # The operator's own settings come last, so a cluster that allows the policy can
    # ask for it back.
    allowed = OperatorSettings(spark_conf={"spark.kubernetes.driver.pod.excludedFeatureSteps": ""})
    again = desired.render_spark_application(VIEW, 2, WINDOW, allowed, OWNER)
    assert again["spec"]["sparkConf"]["spark.kubernetes.driver.pod.excludedFeatureSteps"] == ""


def test_jobs_get_the_region_in_both_variables_the_aws_sdks_read() -> None:
    app = desired.render_spark_application(VIEW, 2, WINDOW, SETTINGS, OWNER)

    for role in ("driver", "executor"):
        env = {e["name"]: e.get("value") for e in app["spec"][role]["env"]}
        assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == SETTINGS.aws_region


def test_a_plain_http_endpoint_is_allowed_explicitly_and_only_then() -> None:
    local = OperatorSettings(aws_endpoint_url="http://10.250.0.1:4566")
    https = OperatorSettings(aws_endpoint_url="https://s3.example.com")

    for settings, allowed in ((local, "true"), (https, None), (SETTINGS, None)):
        app = desired.render_spark_application(VIEW, 2, WINDOW, settings, OWNER)
        env = {e["name"]: e.get("value") for e in app["spec"]["executor"]["env"]}
        assert env.get("AWS_ALLOW_HTTP") == allowed
