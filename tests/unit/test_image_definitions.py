"""images/images.yaml is the one definition of featurekube's images: the Dockerfiles
are rendered from it, and what it names exists where the chart and the operator
expect it."""

from __future__ import annotations

import importlib.util
import os
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import yaml

REPO = Path(__file__).resolve().parents[2]
HACK = REPO / "hack" / "images"


def _module(name: str) -> ModuleType:
    sys.path.insert(0, str(HACK))
    try:
        spec = importlib.util.spec_from_file_location(name, HACK / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(HACK))


definitions = _module("definitions")
dockerfiles = _module("dockerfiles")
IMAGES = definitions.load_images()
BASE = definitions.load_base()


def test_the_checked_in_dockerfiles_are_rendered_from_the_definitions() -> None:
    for image in IMAGES.values():
        for path, text in dockerfiles.outputs(image, BASE).items():
            assert path.read_text() == text, f"{path} is out of date: run `make dockerfiles`"


def test_every_image_runs_as_the_non_root_user_of_the_base() -> None:
    assert BASE.uid != 0
    for image in IMAGES.values():
        dockerfile = (REPO / "images" / image.key / "Dockerfile").read_text()
        assert f"USER {BASE.uid}:{BASE.uid}" in dockerfile
    base_script = (HACK / "debian-base.sh").read_text()
    assert "$BASE_PACKAGES" in base_script and "--uid $IMAGE_UID" in base_script


def test_each_image_installs_a_declared_extra_at_the_locked_versions() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for image in IMAGES.values():
        assert set(image.extra.split(",")) <= set(extras)
        (deps,) = [c for c in image.deps_commands() if "uv pip install" in c]
        assert "-c /src/requirements.lock" in " ".join(image.deps_commands())
        assert "-r /tmp/requirements.txt" in deps


def test_the_entry_points_exist_where_the_images_put_them() -> None:
    for key in ("operator", "feature-server"):
        python, flag, module = IMAGES[key].entrypoint
        assert (python, flag) == (definitions.PYTHON, "-m")
        assert any(
            (REPO / part / module / "__main__.py").is_file()
            for part in ("operator", "feature_server", "sdk")
        )
    spark = IMAGES["spark"]
    assert spark.entrypoint[-1] == "/opt/featurekube/entrypoint.sh"
    entrypoint = REPO / "images" / "spark" / "entrypoint.sh"
    assert os.access(entrypoint, os.X_OK)
    assert f"{entrypoint.relative_to(REPO)} {spark.entrypoint[-1]}" in " ".join(spark.app)


def test_the_chart_and_the_operator_name_the_images_and_paths_the_definitions_build() -> None:
    from featurekube_operator import desired, settings

    values = yaml.safe_load((REPO / "charts" / "featurekube" / "values.yaml").read_text())
    assert values["operator"]["image"]["repository"] == IMAGES["operator"].name
    assert values["featureServer"]["image"]["repository"] == IMAGES["feature-server"].name
    assert values["spark"]["image"]["repository"] == IMAGES["spark"].name
    defaults = settings.OperatorSettings()
    assert defaults.spark_image == IMAGES["spark"].reference
    assert defaults.server_image == IMAGES["feature-server"].reference
    # The Spark image is also the python engine's: its Jobs run this interpreter.
    assert desired.JOB_PYTHON == definitions.PYTHON
    main_file = values["spark"]["mainApplicationFile"].removeprefix("local://")
    assert main_file == "/opt/featurekube/materialize.py"
    assert f" {main_file}" in " ".join(IMAGES["spark"].app)
