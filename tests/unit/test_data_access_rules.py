"""Per-namespace credentials and allowed S3 prefixes: which credentials the operator
gives a namespace's pods, and which paths a namespace's views may use."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from featurekube import s3_prefixes
from featurekube.spec import v1alpha1
from featurekube_operator import credentials, desired, prefixes, runs
from featurekube_operator.settings import OperatorSettings
from featurekube_operator.windows import Window

OWNER = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureView",
    "metadata": {"name": "trips", "uid": "u-1"},
}
VIEW_DOC: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureView",
    "metadata": {"name": "trips", "namespace": "team-a"},
    "spec": {
        "owner": "a",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"batch": {"path": "s3://lake/team-a/trips/"}},
        "features": [{"name": "rating", "type": "float64"}],
    },
}
WINDOW = Window(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
CONFINED = OperatorSettings(
    offline_uri="s3://lake/offline",
    allowed_prefixes='{"team-a": ["s3://lake/team-a/", "s3a://shared/"], "team-b": []}',
)
SECRET_KEYS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}


def _view(path: str, namespace: str = "team-a", **materialization: Any) -> v1alpha1.FeatureView:
    doc = copy.deepcopy(VIEW_DOC)
    doc["metadata"]["namespace"] = namespace
    doc["spec"]["source"]["batch"]["path"] = path
    if materialization:
        doc["spec"]["materialization"] = materialization
    return v1alpha1.FeatureView.model_validate(doc)


# -- allowed prefixes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "prefix", "expected"),
    [
        ("s3://lake/team-a/trips/", "s3://lake/team-a/", True),
        ("s3://lake/team-a", "s3://lake/team-a/", True),
        ("s3a://lake/team-a/trips/", "s3://lake/team-a/", True),
        ("s3://lake/team-a/trips/*.parquet", "s3a://lake/team-a", True),
        ("s3://lake/team-ab/trips/", "s3://lake/team-a/", False),
        ("s3://lake/team-b/trips/", "s3://lake/team-a/", False),
        ("s3://lake/team-a/../team-b/", "s3://lake/team-a/", False),
        ("s3://lake/team-a/./x", "s3://lake/team-a/", False),
        ("s3://lake/team-a//x", "s3://lake/team-a/", False),
        ("s3://lakehouse/team-a/", "s3://lake/", False),
        ("s3://lake/", "s3://lake/team-a/", False),
    ],
)
def test_a_path_is_inside_a_prefix_only_at_a_segment_boundary(
    path: str, prefix: str, expected: bool
) -> None:
    assert s3_prefixes.inside(path, prefix) is expected


def test_the_setting_maps_namespaces_to_prefixes_and_refuses_junk() -> None:
    assert s3_prefixes.parse_allowed("") == {}
    assert s3_prefixes.parse_allowed('{"a": ["s3://x/a/"], "*": []}') == {
        "a": ("s3://x/a/",),
        "*": (),
    }
    for junk, says in [
        ("[1]", "expected"),
        ("{", "not JSON"),
        ('{"a": "s3://x/"}', "of a: expected a list"),
        ('{"a": ["/etc/"]}', "'/etc/' is not an S3 prefix"),
        ('{"a": ["s3://x/../y/"]}', "is not an S3 prefix"),
    ]:
        with pytest.raises(ValueError, match=says):
            s3_prefixes.parse_allowed(junk)
    with pytest.raises(ValueError, match="FEATUREKUBE_AWS_CREDENTIALS"):
        OperatorSettings(aws_credentials="shared")
    with pytest.raises(ValueError, match="not JSON"):
        OperatorSettings.from_env({"FEATUREKUBE_ALLOWED_PREFIXES": "team-a=s3://x/"})


def test_a_namespace_not_named_gets_the_default_or_nothing() -> None:
    allowed = {"team-a": ("s3://lake/team-a/",), "*": ("s3://public/",)}
    assert s3_prefixes.prefixes_for(allowed, "team-a") == ("s3://lake/team-a/",)
    assert s3_prefixes.prefixes_for(allowed, "team-c") == ("s3://public/",)
    assert s3_prefixes.prefixes_for({"team-a": ()}, "team-c") == ()
    assert s3_prefixes.prefixes_for({}, "team-c") is None


def test_a_view_inside_its_prefixes_passes() -> None:
    assert prefixes.view_problems(_view("s3://lake/team-a/trips/"), CONFINED) == []
    assert prefixes.view_problems(_view("s3://shared/rates/"), CONFINED) == []
    # Its own namespace's offline tables are always its own.
    assert prefixes.view_problems(_view("s3://lake/offline/team-a/other/v1/"), CONFINED) == []
    # Not confined: anything goes (the credentials' policy is then the only limit).
    assert prefixes.view_problems(_view("s3://anything/x/"), OperatorSettings()) == []


def test_a_view_outside_its_prefixes_is_refused_naming_the_path_and_prefixes() -> None:
    (problem,) = prefixes.view_problems(_view("s3://lake/team-b/trips/"), CONFINED)
    assert problem == (
        "spec.source.batch.path: s3://lake/team-b/trips/ is outside the S3 prefixes "
        "namespace team-a may use (s3://lake/team-a/, s3a://shared/, s3://lake/offline/team-a/)"
    )
    # Another team's offline table is another team's.
    assert prefixes.view_problems(_view("s3://lake/offline/team-b/trips/v1/"), CONFINED)
    # A namespace with no prefixes reads nothing but its own offline tables.
    (problem,) = prefixes.view_problems(_view("s3://lake/team-b/x/", "team-b"), CONFINED)
    assert "(s3://lake/offline/team-b/)" in problem
    # Not named, with no "*": nothing.
    assert prefixes.view_problems(_view("s3://lake/team-a/x/", "team-c"), CONFINED)


def test_the_offline_location_is_checked_too() -> None:
    settings = OperatorSettings(
        offline_uri="s3://elsewhere/offline", allowed_prefixes='{"team-a": ["s3://lake/"]}'
    )
    # The namespace's own offline directory is always allowed...
    assert prefixes.view_problems(_view("s3://lake/x/"), settings) == []
    # ...but a source in another namespace's is not.
    (problem,) = prefixes.view_problems(_view("s3://elsewhere/offline/team-b/v/"), settings)
    assert problem.startswith("spec.source.batch.path: s3://elsewhere/offline/team-b/v/")
    # Without offline data there is no offline location to check.
    assert prefixes.view_problems(_view("s3://lake/x/", offline=False), settings) == []


def test_the_job_checks_its_paths_before_reading() -> None:
    env = {s3_prefixes.ALLOWED_PREFIXES_ENV: "s3://lake/team-a/,s3://lake/offline/team-a/"}
    s3_prefixes.enforce(
        {"spec.source.batch.path": "s3a://lake/team-a/x/", "--offline-uri": None}, env, "job"
    )
    s3_prefixes.enforce({"spec.source.batch.path": "s3://lake/team-b/x/"}, {}, "job")
    with pytest.raises(s3_prefixes.PathNotAllowedError) as refused:
        s3_prefixes.enforce(
            {
                "spec.source.batch.path": "s3://lake/team-b/x/",
                "--offline-uri": "s3://lake/offline/team-a/trips/v1",
            },
            env,
            "FeatureView team-a/trips [2026-01-01, 2026-01-02)",
        )
    assert str(refused.value) == (
        "FeatureView team-a/trips [2026-01-01, 2026-01-02): spec.source.batch.path: "
        "s3://lake/team-b/x/ is outside the S3 prefixes its namespace may use "
        "(s3://lake/team-a/, s3://lake/offline/team-a/)"
    )


# -- credentials --------------------------------------------------------------------------


def test_a_namespace_secret_comes_first_then_an_irsa_role() -> None:
    secret = {"metadata": {"name": "featurekube-aws"}}
    irsa = {"metadata": {"annotations": {credentials.IRSA_ANNOTATION: "arn:aws:iam::1:role/a"}}}
    plain: dict[str, Any] = {"metadata": {"annotations": {"other": "x"}}}
    mode = credentials.NAMESPACE
    assert credentials.resolve(mode, "featurekube-aws", secret, irsa) == credentials.Credentials(
        secret="featurekube-aws"
    )
    assert credentials.resolve(mode, "featurekube-aws", None, irsa) == credentials.Credentials(
        role_arn="arn:aws:iam::1:role/a"
    )
    assert credentials.resolve(mode, "featurekube-aws", None, plain) is None
    assert credentials.resolve(mode, "featurekube-aws", None, None) is None
    # Ambient: the pods' environment, whatever the namespace holds.
    assert credentials.resolve(credentials.AMBIENT, "x", None, None) == credentials.Credentials()


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_jobs_take_only_their_namespace_secret_keys() -> None:
    access = credentials.Credentials(secret="team-a-aws")
    app = desired.render_spark_application(
        _view("s3://lake/team-a/trips/"), 1, WINDOW, CONFINED, OWNER, access=access
    )
    job = desired.render_materialize_job(
        _view("s3://lake/team-a/trips/"), 1, WINDOW, CONFINED, OWNER, access=access
    )
    (container,) = job["spec"]["template"]["spec"]["containers"]
    for env in (
        _env(app["spec"]["driver"]),
        _env(app["spec"]["executor"]),
        _env(container),
    ):
        for key in SECRET_KEYS:
            ref = env[key]["secretKeyRef"]
            assert (ref["name"], ref["key"]) == ("team-a-aws", key)
        assert env["AWS_SESSION_TOKEN"]["secretKeyRef"]["optional"] is True
        assert "optional" not in env["AWS_ACCESS_KEY_ID"]["secretKeyRef"]
        # And the prefixes they check before reading.
        assert env[s3_prefixes.ALLOWED_PREFIXES_ENV] == (
            "s3://lake/team-a/,s3a://shared/,s3://lake/offline/team-a/"
        )
    # Only those keys: nothing else of the Secret (envFrom) reaches the pod.
    assert "envFrom" not in container and "envFrom" not in app["spec"]["driver"]


def test_irsa_and_ambient_pods_get_no_keys_and_unconfined_jobs_no_prefixes() -> None:
    for access in (credentials.Credentials(role_arn="arn:aws:iam::1:role/a"), None):
        job = desired.render_materialize_job(
            _view("s3://raw-x/y/"), 1, WINDOW, OperatorSettings(), OWNER, access=access
        )
        (container,) = job["spec"]["template"]["spec"]["containers"]
        env = _env(container)
        assert not SECRET_KEYS & set(env)
        assert s3_prefixes.ALLOWED_PREFIXES_ENV not in env
        assert job["spec"]["template"]["spec"]["serviceAccountName"] == "featurekube-spark"


def test_feature_servers_take_their_namespace_secret_keys() -> None:
    service = v1alpha1.FeatureService.model_validate(
        {
            "apiVersion": "featurekube.dev/v1alpha1",
            "kind": "FeatureService",
            "metadata": {"name": "eta", "namespace": "team-a"},
            "spec": {"owner": "a", "features": [{"featureView": "trips"}]},
        }
    )
    deployment = desired.render_deployment(
        service,
        {"featureViews": []},
        CONFINED,
        OWNER,
        credentials.Credentials(secret="featurekube-aws"),
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = _env(container)
    assert {k: env[k]["secretKeyRef"]["name"] for k in SECRET_KEYS} == dict.fromkeys(
        SECRET_KEYS, "featurekube-aws"
    )
    assert s3_prefixes.ALLOWED_PREFIXES_ENV not in env


def test_the_job_refuses_a_source_outside_its_prefixes_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The job as the operator starts it, its spec saying team-b's path: it fails before
    any I/O (no store is reachable here), its report naming the path and prefixes."""
    from featurekube.materialize import __main__ as job

    spec = tmp_path / "featureview.yaml"
    doc = copy.deepcopy(VIEW_DOC)
    doc["spec"]["source"]["batch"]["path"] = "s3://lake/team-b/trips/"
    spec.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv(s3_prefixes.ALLOWED_PREFIXES_ENV, "s3://lake/team-a/")
    code = job.main(
        [
            "--spec",
            str(spec),
            "--start",
            "2026-01-01T00:00:00Z",
            "--end",
            "2026-01-02T00:00:00Z",
            "--offline-uri",
            "s3://lake/team-a/offline/trips/v1",
            "--online-table",
            "fk.team-a.trips.v1",
        ]
    )
    assert code == 1
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["errorType"] == "PathNotAllowedError"
    assert (
        "spec.source.batch.path: s3://lake/team-b/trips/ is outside the S3 prefixes"
        in (report["error"])
    )
    assert report["rows"]["read"] == 0
    # Running it again cannot help: the operator does not retry it.
    assert report["errorType"] in runs.PERMANENT_ERRORS
