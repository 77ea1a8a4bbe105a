"""The public surface and the promise that ``import featurekube`` stays light."""

from __future__ import annotations

import subprocess
import sys

import featurekube
from featurekube import errors


def test_importing_featurekube_loads_no_heavy_dependency() -> None:
    code = (
        "import sys, featurekube, featurekube.spark_session, featurekube.cli.main\n"
        "featurekube.FeatureStore\n"
        "heavy = {'pyspark', 'grpc', 'kopf', 'duckdb', 'moto', 'delta'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert loaded.stdout.strip() == "[]"


def test_the_public_names_are_pinned() -> None:
    assert featurekube.__all__ == [
        "ComponentStartError",
        "FeatureStore",
        "FeaturekubeError",
        "MissingDependencyError",
        "OnlineClient",
        "PlatformError",
        "__version__",
    ]
    assert featurekube.OnlineClient.__name__ == "OnlineClient"


def test_every_error_is_a_featurekube_error() -> None:
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.FeaturekubeError)


def test_a_missing_extra_names_the_pip_command() -> None:
    from featurekube import _deps

    try:
        _deps.import_optional("featurekube_no_such_module", extra="spark")
    except errors.MissingDependencyError as exc:
        assert "pip install 'featurekube[spark]'" in str(exc)
    else:
        raise AssertionError("import_optional imported a module that does not exist")
