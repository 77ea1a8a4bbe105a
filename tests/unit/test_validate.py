"""``featurekube validate``: every check, its line, its path and its message."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pydantic
import pytest

from featurekube import validation
from featurekube.cli import main as cli
from featurekube.spec import loader, v1alpha1
from featurekube.validation import schema, sql

VIEWS = textwrap.dedent(
    """\
    apiVersion: featurekube.dev/v1alpha1
    kind: FeatureView
    metadata:
      name: driver-trip-stats
      namespace: rides
    spec:
      owner: eta-team
      description: Trips and fares per driver over sliding windows.
      entities:
        - name: driver_id
          type: int64
      source:
        batch:
          path: s3://featurekube-demo/raw/trips/
      transformation:
        sql: |
          SELECT driver_id, event_timestamp, trip_id, fare
          FROM source
          WHERE status = 'completed'
      aggregations:
        - name: trips_30m
          column: trip_id
          function: count
          window: 30m
        - name: trips_7d
          column: trip_id
          function: count
          window: 7d
        - name: avg_fare_7d
          column: fare
          function: mean
          window: 7d
      aggregationInterval: 10m
      ttl: 1d
      materialization:
        schedule: "0 * * * *"
      expectations:
        - feature: avg_fare_7d
          min: 0
    ---
    apiVersion: featurekube.dev/v1alpha1
    kind: FeatureView
    metadata:
      name: driver-profile
      namespace: rides
    spec:
      owner: eta-team
      entities:
        - name: driver_id
          type: int64
      source:
        batch:
          path: s3://featurekube-demo/raw/drivers/
          timestampField: updated_at
      features:
        - name: avg_rating
          type: float64
        - name: conv_rate
          type: float64
      sharedWith: [pricing]
    """
)

RIDERS = textwrap.dedent(
    """\
    apiVersion: featurekube.dev/v1alpha1
    kind: FeatureView
    metadata:
      name: rider-profile
      namespace: rides
    spec:
      owner: rider-team
      entities:
        - name: rider_id
          type: string
      source:
        batch:
          path: s3://featurekube-demo/raw/riders/
      features:
        - name: avg_rating
          type: float64
        - name: trips_lifetime
          type: int64
    """
)

SERVICE = textwrap.dedent(
    """\
    apiVersion: featurekube.dev/v1alpha1
    kind: FeatureService
    metadata:
      name: eta-model
      namespace: rides
    spec:
      owner: eta-team
      description: Features of the ETA model.
      features:
        - featureView: driver-trip-stats
          features: [trips_7d, avg_fare_7d]
        - featureView: driver-profile
        - featureView: rider-profile
          prefix: rider_
      requestData:
        - name: trip_distance_km
          type: float64
      transformations:
        - name: fare_per_km
          type: float64
          expression: avg_fare_7d / nullif(trip_distance_km, 0)
      server:
        replicas: 2
    """
)

FILES = {"views.yaml": VIEWS, "riders.yml": RIDERS, "service.yaml": SERVICE}


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean feature repo at ./features, the current directory being its parent."""
    monkeypatch.chdir(tmp_path)
    root = Path("features")
    root.mkdir()
    for name, text in FILES.items():
        (root / name).write_text(text)
    return root


def _edit(path: Path, old: str, new: str) -> str:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} must occur once in {path}"
    text = text.replace(old, new)
    path.write_text(text)
    return text


def _line(text: str, needle: str) -> int:
    """The 1-based line of the only occurrence of ``needle`` in ``text``."""
    assert text.count(needle) == 1, f"{needle!r} must occur once"
    return text[: text.index(needle)].count("\n") + 1


def _validate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = cli.main(["validate", *args])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def _one_problem(capsys: pytest.CaptureFixture[str], root: Path) -> str:
    code, lines, _ = _validate(capsys, str(root))
    assert code == 1
    assert len(lines) == 1, lines
    return lines[0]


# --- a clean directory -------------------------------------------------------------


def test_a_clean_directory_passes_with_a_summary(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, err = _validate(capsys, "features")

    assert code == 0
    assert lines == ["features: 3 FeatureViews, 1 FeatureService, no problems"]
    assert err == ""


def test_a_clean_directory_gives_an_empty_json_array(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, _ = _validate(capsys, "features", "--output", "json")

    assert code == 0
    assert json.loads("\n".join(lines)) == []


def test_a_single_file_can_be_validated(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = _validate(capsys, "features/views.yaml")

    assert code == 0
    assert lines == ["features/views.yaml: 2 FeatureViews, 0 FeatureServices, no problems"]


def test_files_below_the_current_directory_are_named_relative_to_it(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(repo / "views.yaml", "  ttl: 1d", "  ttl: one day")

    line = _one_problem(capsys, repo.absolute())

    assert line.startswith("features/views.yaml:34: FeatureView/driver-trip-stats: spec.ttl: ")


# --- the schema, in plain words ----------------------------------------------------

SCHEMA_CASES: list[tuple[str, str, str, str, str, str, tuple[str, ...]]] = [
    # file, old text, new text, the line's text, Kind/name, path, words of the message
    (
        "service.yaml",
        "  owner: eta-team\n",
        "",
        "spec:\n  description: Features of the ETA model.",
        "FeatureService/eta-model",
        "spec.owner",
        ("is required", "who to ask"),
    ),
    (
        "views.yaml",
        "  ttl: 1d",
        "  ttll: 1d",
        "  ttll: 1d",
        "FeatureView/driver-trip-stats",
        "spec.ttll",
        ("unknown field 'ttll'; did you mean 'ttl'?",),
    ),
    (
        "riders.yml",
        "    - name: trips_lifetime\n      type: int64",
        "    - name: trips_lifetime\n      type: int64\n      colour: red",
        "      colour: red",
        "FeatureView/rider-profile",
        "spec.features[1].colour",
        ("unknown field 'colour'", "the fields here are name, type, description"),
    ),
    (
        "views.yaml",
        "  name: driver-trip-stats\n  namespace: rides",
        "  name: driver-trip-stats\n  namespace: rides\n  labells: {team: eta}",
        "  labells:",
        "FeatureView/driver-trip-stats",
        "metadata.labells",
        ("unknown field 'labells'; did you mean 'labels'?",),
    ),
    (
        "views.yaml",
        "      window: 7d\n    - name: avg_fare_7d",
        "      window: 7 days\n    - name: avg_fare_7d",
        "window: 7 days",
        "FeatureView/driver-trip-stats",
        "spec.aggregations[1].window",
        ("'7 days' is not a duration", "positive whole number", "'30m', '1d', '7d'"),
    ),
    (
        "views.yaml",
        "  ttl: 1d",
        "  ttl: 30",
        "  ttl: 30",
        "FeatureView/driver-trip-stats",
        "spec.ttl",
        ("expected a duration, found the number 30", "'30m', '1d', '7d'"),
    ),
    (
        "views.yaml",
        'schedule: "0 * * * *"',
        "schedule: hourly",
        "schedule: hourly",
        "FeatureView/driver-trip-stats",
        "spec.materialization.schedule",
        ("'hourly' is not a cron schedule", "five fields", "@hourly", "@daily"),
    ),
    (
        "views.yaml",
        "      function: mean",
        "      function: avg",
        "function: avg",
        "FeatureView/driver-trip-stats",
        "spec.aggregations[2].function",
        ("must be one of count, count_distinct, sum, mean, min, max, last, stddev", "'avg'"),
    ),
    (
        "riders.yml",
        "      type: string",
        "      type: str",
        "type: str",
        "FeatureView/rider-profile",
        "spec.entities[0].type",
        ("must be one of int64, string; found the text 'str'; did you mean 'string'?",),
    ),
    (
        "views.yaml",
        'schedule: "0 * * * *"',
        'schedule: "0 * * * *"\n    online: maybe',
        "online: maybe",
        "FeatureView/driver-trip-stats",
        "spec.materialization.online",
        ("expected true or false, found the text 'maybe'",),
    ),
    (
        "service.yaml",
        "replicas: 2",
        "replicas: two",
        "replicas: two",
        "FeatureService/eta-model",
        "spec.server.replicas",
        ("expected a whole number, found the text 'two'",),
    ),
    (
        "service.yaml",
        "replicas: 2",
        "resources:\n      requests:\n        cpu: [1]",
        "cpu: [1]",
        "FeatureService/eta-model",
        "spec.server.resources.requests.cpu",
        ("expected a whole number or text, found a list",),
    ),
    (
        "riders.yml",
        "trips_lifetime",
        "TripsLifetime",
        "TripsLifetime",
        "FeatureView/rider-profile",
        "spec.features[1].name",
        ("'TripsLifetime' is not a valid name", "lower-case", "e.g. 'tripslifetime'"),
    ),
    (
        "views.yaml",
        "      path: s3://featurekube-demo/raw/trips/",
        "      path: /data/trips/",
        "path: /data/trips/",
        "FeatureView/driver-trip-stats",
        "spec.source.batch.path",
        ("is not an S3 path", "s3://bucket/prefix/"),
    ),
    # The spec's cross-field rules, with their field paths.
    (
        "views.yaml",
        "aggregationInterval: 10m",
        "aggregationInterval: 7m",
        "  aggregations:",
        "FeatureView/driver-trip-stats",
        "spec.aggregations",
        ("whole multiple of spec.aggregationInterval",),
    ),
    (
        "views.yaml",
        "  aggregationInterval: 10m\n",
        "",
        "spec:\n  owner: eta-team\n  description",
        "FeatureView/driver-trip-stats",
        "spec.aggregationInterval",
        ("aggregations need spec.aggregationInterval",),
    ),
    (
        "views.yaml",
        "  ttl: 1d",
        "  ttl: 5m",
        "  ttl: 5m",
        "FeatureView/driver-trip-stats",
        "spec.ttl",
        ("at least spec.aggregationInterval",),
    ),
    (
        "views.yaml",
        "    - feature: avg_fare_7d",
        "    - feature: avg_fare_30d",
        "  expectations:",
        "FeatureView/driver-trip-stats",
        "spec.expectations",
        ("name a feature of this view",),
    ),
    (
        "views.yaml",
        "      column: fare\n      function: mean",
        "      column: fare\n      function: sum",
        "    - name: avg_fare_7d",
        "FeatureView/driver-trip-stats",
        "spec.aggregations[2].type",
        ("set type for a sum",),
    ),
    (
        "service.yaml",
        "  name: eta-model",
        "  name: eta-model-of-the-ranking-of-drivers-and-riders-per-city",
        "  name: eta-model",
        "FeatureService/eta-model-of-the-ranking-of-drivers-and-riders-per-city",
        "metadata.name",
        ("at most 50 characters",),
    ),
    (
        "riders.yml",
        "    - name: rider_id\n      type: string",
        "    - name: rider_id\n      type: string\n    - name: rider_id\n      type: int64",
        "    - name: rider_id\n      type: int64",
        "FeatureView/rider-profile",
        "spec.entities[1]",
        ("two items of entities have name 'rider_id'", "unique"),
    ),
]


@pytest.mark.parametrize(
    ("file", "old", "new", "at", "obj", "path", "words"),
    SCHEMA_CASES,
    ids=[case[5] for case in SCHEMA_CASES],
)
def test_schema_errors_point_at_the_field_and_say_what_to_change(
    repo: Path,
    capsys: pytest.CaptureFixture[str],
    file: str,
    old: str,
    new: str,
    at: str,
    obj: str,
    path: str,
    words: tuple[str, ...],
) -> None:
    text = _edit(repo / file, old, new)

    line = _one_problem(capsys, repo)

    assert line.startswith(f"features/{file}:{_line(text, at)}: {obj}: {path}: "), line
    for word in words:
        assert word in line
    assert "Input should" not in line and "\x1b" not in line


def test_every_pattern_of_the_spec_models_is_described_in_words() -> None:
    def patterns(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
            return own + [p for value in node.values() for p in patterns(value)]
        if isinstance(node, list):
            return [p for item in node for p in patterns(item)]
        return []

    found = patterns(v1alpha1.FeatureView.model_json_schema(by_alias=True))
    found += patterns(v1alpha1.FeatureService.model_json_schema(by_alias=True))

    assert found
    assert [p for p in found if schema.describe_pattern(p) is None] == []


def test_a_schema_error_maps_to_yaml_paths_without_pydantic_wording() -> None:
    body = {
        "apiVersion": "featurekube.dev/v1alpha1",
        "kind": "FeatureView",
        "metadata": {"name": "driver-trip-stats"},
        "spec": {"owner": "eta-team", "entities": [{"name": "driver_id", "type": "int32"}]},
    }
    with pytest.raises(pydantic.ValidationError) as raised:
        v1alpha1.FeatureView.model_validate(body)
    document = loader.Document(Path("v.yaml"), 0, body, {})

    found = schema.problems_from_error(document, v1alpha1.FeatureView, raised.value)

    assert [(p.path, p.message) for p in found] == [
        (
            "spec.entities[0].type",
            "must be one of int64, string; found the text 'int32'; did you mean 'int64'?",
        ),
        ("spec.source", "is required (where the raw rows come from)"),
    ]


# --- objects that are not ours, and definitions -------------------------------------


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata: {}\n",
            "features/other.yaml:1: ConfigMap/settings: not a featurekube object (apiVersion v1, "
            "kind ConfigMap)",
        ),
        (
            "apiVersion: featurekube.dev/v1alpha1\nkind: FeatureServce\nmetadata:\n  name: eta\n",
            "features/other.yaml:2: FeatureServce/eta: kind: unknown kind 'FeatureServce'",
        ),
        (
            "apiVersion: featurekube.dev/v1\nkind: FeatureView\nmetadata:\n  name: eta\n",
            "features/other.yaml:1: FeatureView/eta: apiVersion: a FeatureView has apiVersion "
            "featurekube.dev/v1alpha1; found the text 'featurekube.dev/v1'",
        ),
        (
            "# a list is no object\n- driver_id\n- trips_7d\n",
            "features/other.yaml:2: not a Kubernetes object: found a list",
        ),
        (
            "kind: FeatureView\nmetadata:\n  name: eta\n",
            "features/other.yaml:1: FeatureView/eta: apiVersion: a FeatureView has apiVersion "
            "featurekube.dev/v1alpha1; found nothing (null)",
        ),
    ],
    ids=["other-kind", "misspelt-kind", "other-version", "not-a-mapping", "no-api-version"],
)
def test_objects_that_are_not_ours_are_reported(
    repo: Path, capsys: pytest.CaptureFixture[str], document: str, expected: str
) -> None:
    (repo / "other.yaml").write_text(document)

    line = _one_problem(capsys, repo)

    assert line.startswith(expected), line


def test_a_misspelt_kind_gets_a_suggestion(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _edit(repo / "service.yaml", "kind: FeatureService", "kind: FeatureServce")

    line = _one_problem(capsys, repo)

    assert line.endswith("; did you mean 'FeatureService'?")


def test_an_object_defined_twice_is_reported_where_it_is_repeated(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "zz-copy.yaml").write_text("# a copy\n" + RIDERS)

    line = _one_problem(capsys, repo)

    assert line == (
        "features/zz-copy.yaml:5: FeatureView/rider-profile: metadata.name: FeatureView "
        "rides/rider-profile is already defined at features/riders.yml:4; define each object once"
    )


def test_the_same_name_in_another_namespace_is_another_object(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "zz-copy.yaml").write_text(RIDERS.replace("namespace: rides", "namespace: pricing"))

    code, _, _ = _validate(capsys, "features")

    assert code == 0


def test_yaml_that_does_not_parse_is_reported_at_its_line(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(
        repo / "riders.yml", "  owner: rider-team", "  owner: rider-team\n  tags: {team: [riders}"
    )

    line = _one_problem(capsys, repo)

    assert line.startswith("features/riders.yml:8: the YAML does not parse: ")
    assert "while parsing a flow" in line


def test_a_view_in_a_file_that_does_not_parse_is_not_called_unknown(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(repo / "riders.yml", "kind: FeatureView", "kind: FeatureView\n  oops: [")

    code, lines, _ = _validate(capsys, "features")

    assert code == 1
    assert [line.split(":")[0] for line in lines] == ["features/riders.yml"]


def test_lines_are_counted_across_the_documents_of_a_file(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # views.yaml has 60 lines (two documents); then come a '---', a comment, and a third
    # document whose window is its 18th line: line 80 of the file.
    text = _edit(
        repo / "views.yaml",
        "  sharedWith: [pricing]\n",
        "  sharedWith: [pricing]\n---\n# riders' cancellations\n"
        + RIDERS.replace("rider-profile", "rider-cancellations")
        .replace("features:\n", "aggregations:\n")
        .replace(
            "    - name: avg_rating\n      type: float64\n"
            "    - name: trips_lifetime\n      type: int64\n",
            "    - name: cancellations_7d\n      column: trip_id\n      function: count\n"
            "      window: 1 week\n",
        )
        + "  aggregationInterval: 1h\n",
    )
    assert _line(text, "window: 1 week") == 80

    code, lines, _ = _validate(capsys, "features")

    assert code == 1
    assert lines == [
        "features/views.yaml:80: FeatureView/rider-cancellations: spec.aggregations[0].window: "
        "'1 week' is not a duration: write a positive whole number and one unit of s, m, h, d "
        "or w, e.g. '30m', '1d', '7d'"
    ]


# --- references from services -------------------------------------------------------


def test_an_unknown_feature_view_is_reported_with_a_suggestion(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _edit(
        repo / "service.yaml", "featureView: driver-profile", "featureView: driver-profile2"
    )

    line = _one_problem(capsys, repo)

    assert line == (
        f"features/service.yaml:{_line(text, 'driver-profile2')}: FeatureService/eta-model: "
        "spec.features[1].featureView: no FeatureView 'driver-profile2' in namespace 'rides'; "
        "did you mean 'driver-profile'?: define it in this directory, or fix the name"
    )


def test_a_view_is_looked_up_in_the_default_namespace_when_none_is_named(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for file in FILES:
        path = repo / file
        path.write_text(path.read_text().replace("  namespace: rides\n", ""))

    code, _, _ = _validate(capsys, "features")

    assert code == 0


def test_a_view_of_the_service_namespace_is_not_found_in_another(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(repo / "riders.yml", "  namespace: rides\n", "")

    line = _one_problem(capsys, repo)

    assert "spec.features[2].featureView: no FeatureView 'rider-profile' in namespace 'rides'" in (
        line
    )


def test_a_view_of_another_namespace_outside_the_directory_is_not_checked(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(
        repo / "service.yaml",
        "    - featureView: rider-profile\n",
        "    - featureView: surge-pricing\n      namespace: pricing\n"
        "    - featureView: rider-profile\n",
    )

    code, _, _ = _validate(capsys, "features")

    assert code == 0


def test_an_unknown_feature_of_a_view_is_reported(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _edit(repo / "service.yaml", "[trips_7d, avg_fare_7d]", "[trips_7days, avg_fare_7d]")

    line = _one_problem(capsys, repo)

    assert line == (
        f"features/service.yaml:{_line(text, 'trips_7days')}: FeatureService/eta-model: "
        "spec.features[0].features[0]: FeatureView rides/driver-trip-stats has no feature "
        "'trips_7days'; did you mean 'trips_7d'? (its features: trips_30m, trips_7d, "
        "avg_fare_7d)"
    )


def test_a_feature_of_a_pinned_version_is_left_to_the_operator(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Version 1 may have had trips_1d; only its snapshot in the cluster says.
    _edit(
        repo / "service.yaml",
        "[trips_7d, avg_fare_7d]\n",
        "[trips_1d, avg_fare_7d]\n      version: 1\n",
    )

    code, lines, _ = _validate(capsys, str(repo))

    assert code == 0, lines


def test_two_features_with_one_name_are_reported_after_the_prefix(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _edit(repo / "service.yaml", "      prefix: rider_\n", "")

    line = _one_problem(capsys, repo)

    assert line == (
        f"features/service.yaml:{_line(text, '- featureView: rider-profile')}: "
        "FeatureService/eta-model: spec.features[2]: the service has two features named "
        "'avg_rating': one from FeatureView rides/driver-profile at spec.features[1] and one "
        "from FeatureView rides/rider-profile here; set a different prefix on one of the two "
        "references"
    )


def test_a_request_field_named_like_a_feature_is_a_duplicate(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _edit(repo / "service.yaml", "- name: trip_distance_km", "- name: conv_rate")
    _edit(repo / "service.yaml", "nullif(trip_distance_km, 0)", "nullif(conv_rate, 0)")

    line = _one_problem(capsys, repo)

    assert line.startswith(
        f"features/service.yaml:{_line(text, '- name: conv_rate')}: FeatureService/eta-model: "
        "spec.requestData[0].name: the service has two features named 'conv_rate': one from "
        "FeatureView rides/driver-profile at spec.features[1] and one from the request data"
    )


def test_a_transformation_named_like_a_feature_is_a_duplicate(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _edit(repo / "service.yaml", "- name: fare_per_km", "- name: rider_avg_rating")

    line = _one_problem(capsys, repo)

    assert line.startswith(
        f"features/service.yaml:{_line(text, 'rider_avg_rating')}: FeatureService/eta-model: "
        "spec.transformations[0].name: the service has two features named 'rider_avg_rating': "
        "one from FeatureView rides/rider-profile at spec.features[2] and one from a "
        "request-time transformation here; rename one of them"
    )


def test_a_view_of_another_namespace_must_be_shared_with_the_service(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(repo / "riders.yml", "namespace: rides", "namespace: riders")
    text = _edit(
        repo / "service.yaml",
        "    - featureView: rider-profile\n",
        "    - featureView: rider-profile\n      namespace: riders\n",
    )

    line = _one_problem(capsys, repo)

    assert line == (
        f"features/service.yaml:{_line(text, 'namespace: riders')}: FeatureService/eta-model: "
        "spec.features[2].namespace: FeatureView riders/rider-profile is not shared with "
        "namespace 'rides': add 'rides' (or '*') to its spec.sharedWith"
    )


@pytest.mark.parametrize("shared_with", ["[rides]", "['*']", "[pricing, rides]"])
def test_a_shared_view_of_another_namespace_may_be_used(
    repo: Path, capsys: pytest.CaptureFixture[str], shared_with: str
) -> None:
    _edit(repo / "riders.yml", "namespace: rides", "namespace: riders")
    _edit(repo / "riders.yml", "  features:\n", f"  sharedWith: {shared_with}\n  features:\n")
    _edit(
        repo / "service.yaml",
        "    - featureView: rider-profile\n",
        "    - featureView: rider-profile\n      namespace: riders\n",
    )

    code, lines, _ = _validate(capsys, "features")

    assert (code, lines[1:]) == (0, [])


def test_an_entity_key_typed_differently_by_two_views_names_both(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _edit(repo / "riders.yml", "    - name: rider_id\n", "    - name: driver_id\n")

    line = _one_problem(capsys, repo)

    assert line == (
        f"features/riders.yml:{_line(text, 'type: string')}: FeatureView/rider-profile: "
        "spec.entities[0].type: entity 'driver_id' is string here but int64 in FeatureView "
        "rides/driver-trip-stats (features/views.yaml:11): every view of an entity must give "
        "its key the same type"
    )


# --- Spark SQL -----------------------------------------------------------------------

SQL_CASES = [
    (
        "SELECT driver_id, event_timestamp, trip_id, fare\n      FROM source\n      WHERE",
        "SELECT driver_id, event_timestamp, trip_id, fare\n      FROM source\n      WHER",
        ("does not parse as Spark SQL", "line 3", "'status'"),
    ),
    (
        "SELECT driver_id, event_timestamp, trip_id, fare\n",
        "INSERT INTO trips SELECT driver_id, event_timestamp, trip_id, fare\n",
        ("is an INSERT statement", "a single SELECT ... FROM source"),
    ),
    (
        "      FROM source\n",
        "      FROM raw_trips\n",
        ("reads table 'raw_trips'", "reads only FROM source"),
    ),
    (
        "      FROM source\n",
        "      FROM warehouse.drivers\n",
        ("reads table 'warehouse.drivers'",),
    ),
    (
        "      FROM source\n",
        "      FROM source s JOIN source d ON s.driver_id = d.driver_id\n",
        ("uses JOIN, which a transformation may not", 'docs/semantics.md, "Transformations"'),
    ),
    (
        "SELECT driver_id,",
        "SELECT reflect('java.lang.System', 'getenv', 'AWS_SECRET_ACCESS_KEY') AS secret, "
        "driver_id,",
        ("uses function reflect, which a transformation may not",),
    ),
    (
        "      FROM source\n      WHERE status = 'completed'\n",
        "\n",
        ("does not read FROM source",),
    ),
    (
        "      WHERE status = 'completed'\n",
        "      WHERE status = 'completed';\n      SELECT * FROM source\n",
        ("has 2 statements",),
    ),
    (
        "SELECT driver_id, event_timestamp, trip_id, fare",
        "SELECT driver_id, trip_id, fare",
        ("does not output event_timestamp (the event time", "add it to the SELECT list"),
    ),
]


@pytest.mark.parametrize(("old", "new", "words"), SQL_CASES)
def test_the_transformation_sql_must_be_one_select_from_source(
    repo: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, words: tuple[str, ...]
) -> None:
    text = _edit(repo / "views.yaml", old, new)

    line = _one_problem(capsys, repo)

    assert line.startswith(
        f"features/views.yaml:{_line(text, 'sql: |')}: FeatureView/driver-trip-stats: "
        "spec.transformation.sql: "
    ), line
    for word in words:
        assert word in line
    assert "\x1b" not in line


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM source WHERE fare > 0",
        "WITH completed AS (SELECT * FROM source WHERE status = 'completed') "
        "SELECT driver_id, event_timestamp, trip_id, fare FROM completed",
        "SELECT driver_id, event_timestamp, trip_id, fare * 1.1 AS fare FROM source",
        "SELECT driver_id, event_timestamp, trip_id, fare FROM source "
        "UNION ALL SELECT driver_id, event_timestamp, trip_id, fare FROM source",
    ],
)
def test_good_transformations_pass(query: str) -> None:
    needed = {"driver_id": "a join key", "event_timestamp": "the event time", "fare": "a column"}

    assert sql.check_query(query, needed) == []


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("SELECT * FROM IDENTIFIER('parquet.`s3a://other-team/offline/`')", "function identifier"),
        ("SELECT java_method('java.lang.System', 'getenv', 'K') AS k FROM source", "java_method"),
        ("SELECT input_file_name() AS f, * FROM source", "function input_file_name"),
        ("SELECT *, row_number() OVER (ORDER BY fare) AS n FROM source", "window functions"),
        ("SELECT driver_id, count(*) AS n FROM source GROUP BY driver_id", "GROUP BY"),
        ("SELECT ROUND(fare, 2) AS fare FROM source", "function round"),
    ],
)
def test_sql_outside_the_allowlist_is_refused_naming_what(query: str, named: str) -> None:
    found = sql.check_query(query)

    assert any(named in problem and "may not" in problem for problem in found), found


def test_parse_errors_carry_no_colour_codes_nor_token_reprs() -> None:
    (message,) = sql.check_query("SELECT * FROM")

    assert message == (
        "does not parse as Spark SQL: expected table name but got the end at line 1, "
        "column 13 (in 'SELECT * FROM')"
    )


# --- request-time expressions --------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        (
            "avg_fare_7d / nullif(trip_distance, 0)",
            (
                "uses 'trip_distance', which is neither a request field (spec.requestData) nor "
                "a feature of this service; did you mean 'trip_distance_km'?",
            ),
        ),
        ("avg_fare_7d / (trip_distance_km", ("does not parse as a Spark SQL expression",)),
        ("SELECT avg_fare_7d FROM source", ("is a SELECT statement", "without SELECT or FROM")),
        ("rider_rating * 2", ("uses 'rider_rating'", "did you mean 'rider_avg_rating'?")),
        ("request.trip_distance_km * 2", ("refers to 'request.trip_distance_km'",)),
    ],
)
def test_request_time_expressions_use_only_request_fields_and_features(
    repo: Path, capsys: pytest.CaptureFixture[str], expression: str, words: tuple[str, ...]
) -> None:
    text = _edit(
        repo / "service.yaml", "avg_fare_7d / nullif(trip_distance_km, 0)", f'"{expression}"'
    )

    line = _one_problem(capsys, repo)

    assert line.startswith(
        f"features/service.yaml:{_line(text, 'expression:')}: FeatureService/eta-model: "
        "spec.transformations[0].expression: "
    ), line
    for word in words:
        assert word in line


def test_an_expression_may_not_use_another_transformation() -> None:
    messages = sql.check_expression("fare_per_km * 100", {"avg_fare_7d"}, {"fare_per_km"})

    assert messages == [
        "uses 'fare_per_km', another request-time transformation; transformations can use only "
        "request fields and the service's features"
    ]


def test_names_are_not_checked_when_a_view_outside_the_directory_serves_all_its_features(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(
        repo / "service.yaml",
        "    - featureView: rider-profile\n",
        "    - featureView: surge-pricing\n      namespace: pricing\n"
        "    - featureView: rider-profile\n",
    )
    _edit(repo / "service.yaml", "nullif(trip_distance_km, 0)", "surge_multiplier")

    code, _, _ = _validate(capsys, "features")

    assert code == 0


# --- output --------------------------------------------------------------------------


def test_json_output_round_trips_every_problem(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(repo / "views.yaml", "  ttl: 1d", "  ttll: 1d")
    _edit(repo / "service.yaml", "featureView: driver-profile", "featureView: driver-profile2")
    (repo / "a-list.yaml").write_text("- driver_id\n- trips_7d\n")

    code, lines, _ = _validate(capsys, "features", "--output", "json")

    data = json.loads("\n".join(lines))
    assert code == 1
    assert all(set(item) == {"file", "line", "kind", "name", "path", "message"} for item in data)
    problems = [validation.Problem.from_json(item) for item in data]
    assert problems == list(validation.validate_path(repo).problems)
    assert [(p.file, p.kind, p.path) for p in problems] == [
        ("features/a-list.yaml", None, None),
        ("features/service.yaml", "FeatureService", "spec.features[1].featureView"),
        ("features/views.yaml", "FeatureView", "spec.ttll"),
    ]


def test_problems_are_sorted_by_file_and_line_with_a_count_on_stderr(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(repo / "views.yaml", "  ttl: 1d", "  ttl: 1 day")
    _edit(repo / "views.yaml", "  owner: eta-team\n  description", "  owner: 7\n  description")
    _edit(repo / "riders.yml", "type: string", "type: text")

    code, lines, err = _validate(capsys, "features")

    assert code == 1
    assert [line.split(": ")[0] for line in lines] == [
        "features/riders.yml:10",
        "features/views.yaml:7",
        "features/views.yaml:34",
    ]
    assert err == "features: 3 FeatureViews, 1 FeatureService, 3 problems\n"


def test_a_problem_without_an_object_reads_file_line_message() -> None:
    problem = validation.Problem("a.yaml", 3, None, None, None, "the YAML does not parse: x")

    assert str(problem) == "a.yaml:3: the YAML does not parse: x"


def test_a_missing_directory_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, err = _validate(capsys, str(tmp_path / "nowhere"))

    assert (code, lines) == (1, [])
    assert "nowhere: no such file or directory" in err


def test_a_directory_without_yaml_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "README.md").write_text("# features\n")

    code, _, err = _validate(capsys, str(tmp_path))

    assert code == 1
    assert "no *.yaml or *.yml files" in err
