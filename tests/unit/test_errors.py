"""One error tree: every error featurekube raises is defined in featurekube.errors and
drawn in its docstring; the packages that raise them only re-export them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from featurekube import errors

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("sdk/featurekube", "feature_server/featurekube_server", "operator/featurekube_operator")
ERRORS_MODULE = REPO / "sdk" / "featurekube" / "errors.py"


def _error_classes_outside_errors() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if path == ERRORS_MODULE or "_proto" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.ClassDef):
                    continue
                bases = [ast.unparse(base) for base in node.bases]
                if any(base.endswith(("Error", "Exception")) for base in bases):
                    found.append(f"{path.relative_to(REPO)}: {node.name}({', '.join(bases)})")
    return found


def test_errors_are_defined_in_featurekube_errors_only() -> None:
    assert _error_classes_outside_errors() == []


def test_the_docstring_draws_every_error_of_the_module() -> None:
    drawn = set(re.findall(r"[├└]── (\w+)", errors.__doc__ or ""))
    defined = {
        name
        for name in errors.__all__
        if isinstance(getattr(errors, name), type) and name != "FeaturekubeError"
    }

    assert drawn == defined


@pytest.mark.parametrize("name", errors.__all__)
def test_every_error_derives_from_featurekube_error(name: str) -> None:
    assert issubclass(getattr(errors, name), errors.FeaturekubeError)


def test_the_packages_names_are_the_tree_s_classes() -> None:
    from featurekube.joins import plan as joins_plan
    from featurekube.materialize import errors as materialize_errors
    from featurekube.writer import errors as writer_errors
    from featurekube_server import errors as server_errors

    assert materialize_errors.PlanError is errors.MaterializePlanError
    assert materialize_errors.TransformationError is errors.SqlTransformationError
    assert writer_errors.RowError is errors.RowError
    assert joins_plan.FeatureNotFoundError is errors.FeatureNotFoundError
    assert server_errors.PlanError is errors.ServingPlanError
    assert server_errors.StoreUnavailableError is errors.StoreUnavailableError


def test_summary_is_the_first_line_and_detail_the_rest() -> None:
    error = errors.SourceError("FeatureView a/b: spec.source: no files: write some\nthe listing")

    assert error.summary == "FeatureView a/b: spec.source: no files: write some"
    assert error.detail == "the listing"
