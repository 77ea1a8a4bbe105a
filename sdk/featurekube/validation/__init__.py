"""Offline checks of feature definitions: what ``featurekube validate`` reports.

Everything the CRD schema checks (through the spec models), and what needs several
objects or a parser: references between FeatureServices and FeatureViews, entity key
types, duplicate names, the Spark SQL of transformations and request-time expressions.
No cluster and no JVM. The checks are pure functions over loaded documents, so the
operator and ``featurekube plan`` reuse them; only :func:`validate_path` reads files,
through :mod:`featurekube.spec.loader`.

    problems    Problem: FILE:LINE: Kind/name: spec.path: message
    schema      one document: ours? passes the schema? (pydantic errors in plain words)
    references  several objects: definitions, references, entity keys
    sql         transformation queries and request-time expressions (sqlglot)
    report      all of the above over documents or a directory
"""

from featurekube.validation.problems import Problem
from featurekube.validation.report import Report, check_documents, load_files, validate_path

__all__ = ["Problem", "Report", "check_documents", "load_files", "validate_path"]
