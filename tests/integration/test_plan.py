"""``featurekube plan DIR`` against the real API server of the local platform.

The live objects are created through the API, so they carry what the server adds
(defaults from the generated CRDs, metadata, status); DIR is written as an author
writes it. The command runs as CI would run it, with the platform's KUBECONFIG, and
is judged by its output and exit status.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from featurekube._platform.platform import Endpoints
from featurekube.cli import main as cli
from featurekube.cli import plan as plan_command

GROUP, VERSION = "featurekube.dev", "v1alpha1"
PLURALS = {"FeatureView": "featureviews", "FeatureService": "featureservices"}

TRIP_STATS: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureView",
    "metadata": {"name": "driver-trip-stats"},
    "spec": {
        "owner": "eta-team@example.com",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"batch": {"path": "s3://featurekube-demo/raw/trips/"}},
        "aggregations": [
            {"name": "trips_30m", "column": "trip_id", "function": "count", "window": "30m"},
            {"name": "trips_1d", "column": "trip_id", "function": "count", "window": "1d"},
            {"name": "trips_7d", "column": "trip_id", "function": "count", "window": "7d"},
        ],
        "aggregationInterval": "10m",
        "ttl": "1d",
        "materialization": {"schedule": "*/10 * * * *", "startTime": "2026-01-01T00:00:00Z"},
        "expectations": [{"feature": "trips_7d", "min": 0, "max": 5000}],
    },
}

DRIVER_PROFILE: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureView",
    "metadata": {"name": "driver-profile"},
    "spec": {
        "owner": "eta-team@example.com",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"batch": {"path": "s3://featurekube-demo/raw/drivers/", "format": "delta"}},
        "features": [
            {"name": "rating", "type": "float64"},
            {"name": "vehicle_type", "type": "string"},
        ],
        "tags": {"team": "eta"},
    },
}

ETA_MODEL: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureService",
    "metadata": {"name": "eta-model"},
    "spec": {
        "owner": "eta-team@example.com",
        "features": [
            {"featureView": "driver-trip-stats", "features": ["trips_30m", "trips_7d"]},
            {"featureView": "driver-profile"},
        ],
        "requestData": [{"name": "trip_distance_km", "type": "float64"}],
        "transformations": [
            {
                "name": "km_per_trip",
                "type": "float64",
                "expression": "trip_distance_km / nullif(trips_7d, 0)",
            }
        ],
        "server": {"replicas": 2, "autoscaling": {"minReplicas": 2, "maxReplicas": 6}},
    },
}


NOW = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
AUTO = "auto (the first window on Spark, later ones by their estimated size)"


@pytest.fixture(autouse=True)
def _fixed_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backfills are counted up to now: a fixed one, so that plans print the same."""
    monkeypatch.setattr(plan_command, "_now", lambda: NOW)


def trip_stats_backfill(namespace: str, version: int | None, reason: str) -> str:
    """The line saying what a new version of driver-trip-stats starts: its schedule of
    every 10 minutes from 2026-01-01 to NOW. ``version`` None: the live view has no
    status, so the new version's number is not known."""
    number = f"version {version}" if version else "a new version"
    return (
        f"* new version: FeatureView {namespace}/driver-trip-stats: creates {number} "
        f"({reason}); backfills 4,464 windows as 31 jobs, 31d from "
        f"2026-01-01T00:00:00Z to 2026-02-01T00:00:00Z, on {AUTO}\n"
    )


def in_namespace(body: dict[str, Any], namespace: str) -> dict[str, Any]:
    placed = copy.deepcopy(body)
    placed["metadata"]["namespace"] = namespace
    return placed


def create_live(api: kubernetes.client.ApiClient, namespace: str, *bodies: dict[str, Any]) -> None:
    custom = kubernetes.client.CustomObjectsApi(api)
    for body in bodies:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURALS[body["kind"]], body
        )


def write_dir(root: Path, *bodies: dict[str, Any]) -> Path:
    """A GitOps repo's directory: one file per object, as people lay them out."""
    root.mkdir(parents=True, exist_ok=True)
    for body in bodies:
        name = f"{body['kind'].lower()}-{body['metadata']['name']}.yaml"
        (root / name).write_text(yaml.safe_dump(body, sort_keys=False))
    return root


def run_plan(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = cli.main(["plan", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def summary(create: int, change: int, delete: int, unchanged: int, breaking: int) -> str:
    noun = "breaking change" if breaking == 1 else "breaking changes"
    return (
        f"Plan: {create} to create, {change} to change, {delete} to delete, "
        f"{unchanged} unchanged; {breaking} {noun}.\n"
    )


# --- create, change, no-op ---------------------------------------------------------


def test_objects_not_in_the_cluster_are_created(
    namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = write_dir(
        tmp_path / "features",
        *(in_namespace(b, namespace) for b in (TRIP_STATS, DRIVER_PROFILE, ETA_MODEL)),
    )

    status, out, err = run_plan(capsys, str(repo))

    assert (status, err) == (2, "")
    assert out == (
        f"+ FeatureView {namespace}/driver-profile (create)\n"
        f"+ FeatureView {namespace}/driver-trip-stats (create)\n"
        f"+ FeatureService {namespace}/eta-model (create)\n"
        "\n"
        f"* new version: FeatureView {namespace}/driver-profile: creates version 1 (a new "
        "view); nothing to backfill, its first window is the next tick\n"
        + trip_stats_backfill(namespace, 1, "a new view")
        + "\n"
        + summary(3, 0, 0, 0, 0)
    )


def test_what_was_applied_is_no_change_despite_server_defaults(
    kube_api: kubernetes.client.ApiClient,
    namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_live(kube_api, namespace, TRIP_STATS, DRIVER_PROFILE, ETA_MODEL)
    # As most repos are written: no namespace in the files, given on the command line.
    repo = write_dir(tmp_path / "features", TRIP_STATS, DRIVER_PROFILE, ETA_MODEL)

    status, out, err = run_plan(capsys, str(repo), "--namespace", namespace)

    assert (status, out, err) == (0, summary(0, 0, 0, 3, 0), "")


def test_a_change_is_shown_field_by_field(
    kube_api: kubernetes.client.ApiClient,
    namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    live = copy.deepcopy(TRIP_STATS)
    del live["spec"]["aggregations"][1]  # trips_1d is what the pull request adds
    create_live(kube_api, namespace, live, DRIVER_PROFILE)
    desired = in_namespace(TRIP_STATS, namespace)
    desired["spec"]["ttl"] = "2d"
    profile = in_namespace(DRIVER_PROFILE, namespace)
    profile["spec"]["tags"] = {"team": "eta", "tier": "gold"}
    repo = write_dir(tmp_path / "features", desired, profile)

    status, out, _ = run_plan(capsys, str(repo))

    assert status == 2
    assert out == (
        f"~ FeatureView {namespace}/driver-profile (change)\n"
        "    spec.tags.tier: unset -> gold\n"
        f"~ FeatureView {namespace}/driver-trip-stats (change)\n"
        "    spec.aggregations[1] (trips_1d): added\n"
        "    spec.ttl: 1d -> 2d\n"
        "\n"
        + trip_stats_backfill(namespace, None, "spec.aggregations changed")
        + "\n"
        + summary(0, 2, 0, 0, 0)
    )


def test_objects_missing_from_dir_are_pruned_unless_told_not_to(
    kube_api: kubernetes.client.ApiClient,
    namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_live(kube_api, namespace, TRIP_STATS, DRIVER_PROFILE)
    repo = write_dir(tmp_path / "features", in_namespace(TRIP_STATS, namespace))

    pruned = run_plan(capsys, str(repo))
    kept = run_plan(capsys, str(repo), "--no-prune")

    assert pruned[:2] == (
        2,
        f"- FeatureView {namespace}/driver-profile (delete)\n\n" + summary(0, 0, 1, 1, 0),
    )
    assert kept[:2] == (0, summary(0, 0, 0, 1, 0))


def test_a_data_change_says_which_version_it_creates_and_what_it_backfills(
    kube_api: kubernetes.client.ApiClient,
    namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_live(kube_api, namespace, TRIP_STATS)
    kubernetes.client.CustomObjectsApi(kube_api).patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        "featureviews",
        "driver-trip-stats",
        {"status": {"version": 2, "latestVersion": 2}},
    )
    added = in_namespace(TRIP_STATS, namespace)
    added["spec"]["aggregations"].append(
        {"name": "trips_2h", "column": "trip_id", "function": "count", "window": "2h"}
    )
    retention = in_namespace(TRIP_STATS, namespace)
    retention["spec"]["ttl"] = "2d"

    _, out, _ = run_plan(capsys, str(write_dir(tmp_path / "added", added)))
    status, json_out, _ = run_plan(
        capsys, str(write_dir(tmp_path / "added", added)), "--output", "json"
    )
    _, ttl_out, _ = run_plan(capsys, str(write_dir(tmp_path / "ttl", retention)))

    assert trip_stats_backfill(namespace, 3, "spec.aggregations changed") in out
    assert status == 2
    (data,) = json.loads(json_out)["newVersions"]
    assert (data["version"], data["windows"], data["jobs"]) == (3, 4464, 31)
    assert "new version" not in ttl_out


# --- breaking changes --------------------------------------------------------------


def test_removing_a_feature_the_eta_model_uses_is_breaking(
    kube_api: kubernetes.client.ApiClient,
    namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_live(kube_api, namespace, TRIP_STATS, DRIVER_PROFILE, ETA_MODEL)
    desired = in_namespace(TRIP_STATS, namespace)
    del desired["spec"]["aggregations"][2]  # trips_7d
    desired["spec"]["expectations"][0]["feature"] = "trips_1d"
    repo = write_dir(
        tmp_path / "features",
        desired,
        in_namespace(DRIVER_PROFILE, namespace),
        in_namespace(ETA_MODEL, namespace),
    )

    status, out, _ = run_plan(capsys, str(repo))

    assert status == 3
    assert out == (
        f"~ FeatureView {namespace}/driver-trip-stats (change)\n"
        "    spec.aggregations[2] (trips_7d): removed\n"
        "    spec.expectations[0] (trips_1d): added\n"
        "    spec.expectations[0] (trips_7d): removed\n"
        "\n" + trip_stats_backfill(namespace, None, "spec.aggregations changed") + "\n"
        f"! breaking: FeatureView {namespace}/driver-trip-stats: feature trips_7d is removed, "
        f"but FeatureService {namespace}/eta-model uses it\n"
        "\n" + summary(0, 1, 0, 2, 1)
    )


def test_changing_the_entity_key_of_a_materialized_view_is_breaking(
    kube_api: kubernetes.client.ApiClient,
    namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_live(kube_api, namespace, TRIP_STATS)
    kubernetes.client.CustomObjectsApi(kube_api).patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        "featureviews",
        "driver-trip-stats",
        {
            "status": {
                "lastMaterializedWindow": {
                    "start": "2026-03-01T09:00:00Z",
                    "end": "2026-03-01T10:00:00Z",
                },
                "conditions": [{"type": "Materialized", "status": "True", "reason": "Written"}],
            }
        },
    )
    desired = in_namespace(TRIP_STATS, namespace)
    desired["spec"]["entities"] = [{"name": "driver_id", "type": "string"}]
    repo = write_dir(tmp_path / "features", desired)

    status, out, _ = run_plan(capsys, str(repo))

    assert status == 3
    assert "    spec.entities[0].type (driver_id): int64 -> string\n" in out
    assert (
        f"! breaking: FeatureView {namespace}/driver-trip-stats: its entity keys change from "
        "driver_id (int64) to driver_id (string), but it has been materialized (its last "
        "window ends 2026-03-01T10:00:00Z): its online table and offline history are keyed "
        "by driver_id (int64)"
    ) in out
    assert out.endswith(summary(0, 1, 0, 0, 1))


def test_deleting_a_view_the_eta_model_references_is_breaking(
    kube_api: kubernetes.client.ApiClient,
    namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_live(kube_api, namespace, TRIP_STATS, DRIVER_PROFILE, ETA_MODEL)
    repo = write_dir(
        tmp_path / "features",
        in_namespace(TRIP_STATS, namespace),
        in_namespace(ETA_MODEL, namespace),
    )

    status, out, _ = run_plan(capsys, str(repo))
    kept_status, kept_out, _ = run_plan(capsys, str(repo), "--no-prune")

    assert status == 3
    assert out == (
        f"- FeatureView {namespace}/driver-profile (delete)\n"
        "\n"
        f"! breaking: FeatureView {namespace}/driver-profile: it is deleted, but "
        f"FeatureService {namespace}/eta-model, which stays, references it: the service can "
        "no longer serve its features\n"
        "\n" + summary(0, 0, 1, 2, 1)
    )
    assert (kept_status, kept_out) == (0, summary(0, 0, 0, 2, 0))


def test_json_output_carries_the_plan_for_machines(
    kube_api: kubernetes.client.ApiClient,
    namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_live(kube_api, namespace, TRIP_STATS, DRIVER_PROFILE, ETA_MODEL)
    desired = in_namespace(DRIVER_PROFILE, namespace)
    desired["spec"]["features"][0]["type"] = "string"  # rating
    repo = write_dir(
        tmp_path / "features",
        in_namespace(TRIP_STATS, namespace),
        desired,
        in_namespace(ETA_MODEL, namespace),
    )

    status, out, _ = run_plan(capsys, str(repo), "--output", "json")

    assert status == 3
    plan = json.loads(out)
    assert plan["summary"] == {
        "create": 0,
        "change": 1,
        "unchanged": 2,
        "delete": 0,
        "breaking": 1,
    }
    assert plan["namespaces"] == [namespace]
    (changed,) = [c for c in plan["changes"] if c["action"] == "change"]
    assert changed["fields"] == [
        {
            "path": "spec.features[0].type",
            "item": "rating",
            "kind": "changed",
            "old": "float64",
            "new": "string",
        }
    ]
    (breaking,) = plan["breaking"]
    assert breaking["consumer"] == {
        "kind": "FeatureService",
        "namespace": namespace,
        "name": "eta-model",
    }
    assert "feature rating changes type from float64 to string" in breaking["reason"]


# --- errors ------------------------------------------------------------------------


def write_kubeconfig(path: Path, source: Path, server: str) -> Path:
    """A copy of the kubeconfig ``source`` pointing at ``server``."""
    config = yaml.safe_load(source.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = server
    path.write_text(yaml.safe_dump(config))
    return path


def test_an_unreachable_cluster_is_named_without_a_traceback(
    platform: Endpoints,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Port 1 on loopback: nothing listens there, the connection is refused at once.
    kubeconfig = write_kubeconfig(
        tmp_path / "kubeconfig", platform.kubeconfig, "https://127.0.0.1:1"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    repo = write_dir(tmp_path / "features", TRIP_STATS)

    started = time.monotonic()
    status, out, err = run_plan(capsys, str(repo))

    assert (status, out) == (1, "")
    assert err.startswith(
        "featurekube: error: cannot reach the Kubernetes API at https://127.0.0.1:1 "
    )
    assert "Traceback" not in err
    assert time.monotonic() - started < 10


def test_a_cluster_without_featurekubes_crds_says_so(
    platform: Endpoints,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The platform has the CRDs installed for every test; under a path prefix that it
    # does not serve, the real API server answers exactly as one without them: 404.
    server = f"{platform.apiserver_url}/no-featurekube-here"
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", platform.kubeconfig, server)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    repo = write_dir(tmp_path / "features", in_namespace(TRIP_STATS, "rides"))

    status, _, err = run_plan(capsys, str(repo))

    assert status == 1
    assert err.startswith(f"featurekube: error: featurekube's CRDs are not installed in {server}")


def test_an_identity_without_rights_is_told_what_to_grant(
    platform: Endpoints,
    namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(platform.kubeconfig_unprivileged))
    repo = write_dir(tmp_path / "features", in_namespace(TRIP_STATS, namespace))

    status, _, err = run_plan(capsys, str(repo))

    assert status == 1
    assert f"may not list featureviews.featurekube.dev in namespace {namespace}" in err
    assert "Grant its identity get and list on featureviews and featureservices" in err


def test_rights_in_its_namespaces_only_plan_with_a_warning(
    platform: Endpoints,
    kube_api: kubernetes.client.ApiClient,
    namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    role: Any = {
        "metadata": {"name": "featurekube-plan"},
        "rules": [
            {
                "apiGroups": [GROUP],
                "resources": ["featureviews", "featureservices"],
                "verbs": ["get", "list"],
            }
        ],
    }
    binding: Any = {
        "metadata": {"name": "featurekube-plan"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "featurekube-plan",
        },
        "subjects": [{"kind": "User", "name": "featurekube-dev-unprivileged"}],
    }
    rbac = kubernetes.client.RbacAuthorizationV1Api(kube_api)
    rbac.create_namespaced_role(namespace, role)
    rbac.create_namespaced_role_binding(namespace, binding)
    create_live(kube_api, namespace, TRIP_STATS)
    _wait_until_allowed(platform.kubeconfig_unprivileged, namespace)
    monkeypatch.setenv("KUBECONFIG", str(platform.kubeconfig_unprivileged))
    repo = write_dir(tmp_path / "features", in_namespace(TRIP_STATS, namespace))

    status, out, err = run_plan(capsys, str(repo))

    assert (status, out) == (0, summary(0, 0, 0, 1, 0))
    assert err.startswith("featurekube: warning: context ")
    assert f"FeatureServices outside {namespace} were not checked for breaking changes" in err


def _wait_until_allowed(kubeconfig: Path, namespace: str) -> None:
    """RBAC decisions come from the API server's informer cache: allowed shortly after."""
    user = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    custom = kubernetes.client.CustomObjectsApi(user)
    deadline = time.monotonic() + 15
    with user:
        while True:
            try:
                custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "featureservices")
                return
            except ApiException as exc:
                if exc.status != 403 or time.monotonic() > deadline:
                    raise
            time.sleep(0.2)


def test_a_definition_that_does_not_parse_is_reported_by_file_line_and_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = copy.deepcopy(TRIP_STATS)
    broken["spec"]["ttl"] = "1 day"
    repo = write_dir(tmp_path / "features", broken, ETA_MODEL)

    status, out, err = run_plan(capsys, str(repo))

    line = (
        (repo / "featureview-driver-trip-stats.yaml").read_text().splitlines().index("  ttl: 1 day")
    )
    assert (status, out) == (1, "")
    assert err.splitlines() == [
        "featurekube: error: 1 problem(s) in the definitions:",
        f"  {repo}/featureview-driver-trip-stats.yaml:{line + 1}: "
        "FeatureView/driver-trip-stats: spec.ttl: '1 day' is not a duration: write a positive "
        "whole number and one unit of s, m, h, d or w, e.g. '30m', '1d', '7d'",
    ]


def test_bad_yaml_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "features"
    repo.mkdir()
    (repo / "view.yaml").write_text("kind: FeatureView\nmetadata: {name: [driver\n")

    status, _, err = run_plan(capsys, str(repo))

    assert status == 1
    assert err.startswith("featurekube: error: 1 problem(s) in the definitions:\n  not valid YAML")
    assert "view.yaml" in err


def test_other_projects_objects_are_skipped_with_a_note(
    namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "eta-config"}}
    repo = write_dir(tmp_path / "features", in_namespace(TRIP_STATS, namespace), config_map)

    status, _, err = run_plan(capsys, str(repo))

    assert status == 2
    assert "skipping v1/ConfigMap: not a featurekube object" in err


def test_an_object_defined_twice_is_an_error(
    namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = write_dir(tmp_path / "features", in_namespace(TRIP_STATS, namespace))
    (repo / "copy.yaml").write_text(yaml.safe_dump(in_namespace(TRIP_STATS, namespace)))

    status, _, err = run_plan(capsys, str(repo))

    assert status == 1
    assert f"FeatureView {namespace}/driver-trip-stats is defined twice" in err
