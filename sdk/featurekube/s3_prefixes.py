"""Allowed S3 prefixes: where a namespace's views may read and write; pure, no I/O.

The platform team confines each namespace's sources (``spec.source.batch.path``) and
offline locations to S3 prefixes (the operator's setting ``allowed_prefixes``). The
operator refuses a view outside them (``InvalidSpec``), and each materialization job
checks again before it reads, with the prefixes the operator passes it in
:data:`ALLOWED_PREFIXES_ENV`.

A path is inside a prefix when it starts with it at a ``/`` boundary (``s3://lake/a/``
does not allow ``s3://lake/ab``), ``s3a://`` and ``s3://`` being one scheme. A path with
a ``.`` or ``..`` segment, or an empty one, is never inside: Hadoop normalizes such
segments away, so that ``s3://lake/a/../b/`` reads ``s3://lake/b/``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from featurekube import errors

__all__ = [
    "ALLOWED_PREFIXES_ENV",
    "PathNotAllowedError",
    "check_paths",
    "enforce",
    "inside",
    "normalize",
    "parse_allowed",
    "prefixes_for",
]

ALLOWED_PREFIXES_ENV = "FEATUREKUBE_ALLOWED_PREFIXES"
"""The job's environment variable: the prefixes its namespace may reach, separated by
commas; unset: not confined."""
ANY_NAMESPACE = "*"
"""The key of :func:`parse_allowed`'s mapping for namespaces not named in it."""
MAX_PREFIXES = 256
MAX_SETTING_BYTES = 64 * 1024

PathNotAllowedError = errors.PathNotAllowedError


def normalize(uri: str) -> str:
    """``uri`` with ``s3a://`` written ``s3://``; other schemes unchanged."""
    return "s3://" + uri.removeprefix("s3a://") if uri.startswith("s3a://") else uri


def _segments_clean(uri: str) -> bool:
    rest = uri.split("://", 1)[1] if "://" in uri else uri
    parts = rest.rstrip("/").split("/")
    return all(part not in ("", ".", "..") for part in parts)


def inside(path: str, prefix: str) -> bool:
    """Whether ``path`` lies under ``prefix``, at a ``/`` boundary."""
    path, prefix = normalize(path), normalize(prefix)
    if not _segments_clean(path):
        return False
    return (path.rstrip("/") + "/").startswith(prefix.rstrip("/") + "/")


def parse_allowed(text: str) -> dict[str, tuple[str, ...]]:
    """The setting: a JSON object from namespace (or ``"*"``: any other) to a list of
    S3 prefixes, e.g. ``{"team-a": ["s3://lake/team-a/"], "*": []}``; empty text: {}
    (not confined). Raises :class:`ValueError` naming what is wrong."""
    if not text.strip():
        return {}
    if len(text) > MAX_SETTING_BYTES:
        raise ValueError(f"allowed prefixes: over {MAX_SETTING_BYTES} bytes")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"allowed prefixes: not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ValueError('allowed prefixes: expected {"<namespace>": ["s3://bucket/prefix/"]}')
    found: dict[str, tuple[str, ...]] = {}
    for namespace, prefixes in raw.items():
        if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
            raise ValueError(f"allowed prefixes of {namespace}: expected a list of S3 prefixes")
        if len(prefixes) > MAX_PREFIXES:
            raise ValueError(f"allowed prefixes of {namespace}: more than {MAX_PREFIXES}")
        for prefix in prefixes:
            if not normalize(prefix).startswith("s3://") or not _segments_clean(prefix):
                raise ValueError(
                    f"allowed prefixes of {namespace}: {prefix!r} is not an S3 prefix "
                    "like s3://bucket/prefix/"
                )
        found[namespace] = tuple(prefixes)
    return found


def prefixes_for(allowed: Mapping[str, Sequence[str]], namespace: str) -> tuple[str, ...] | None:
    """The prefixes of ``namespace`` (those of ``"*"`` when it is not named; none when
    neither is); None when nothing is confined (an empty mapping)."""
    if not allowed:
        return None
    return tuple(allowed.get(namespace, allowed.get(ANY_NAMESPACE, ())))


def check_paths(
    paths: Mapping[str, str | None], prefixes: Sequence[str] | None, where: str
) -> list[str]:
    """One problem per path (named by its field, e.g. ``spec.source.batch.path``) that
    lies outside ``prefixes``, naming the path and the prefixes; [] when all lie inside,
    or when ``prefixes`` is None (not confined)."""
    if prefixes is None:
        return []
    shown = ", ".join(prefixes) if prefixes else "none"
    return [
        f"{field}: {path} is outside the S3 prefixes {where} may use ({shown})"
        for field, path in paths.items()
        if path is not None and not any(inside(path, prefix) for prefix in prefixes)
    ]


def enforce(paths: Mapping[str, str | None], environ: Mapping[str, str], where: str) -> None:
    """The job's check before it reads: raise :class:`PathNotAllowedError` when a path
    lies outside the prefixes in ``environ``'s :data:`ALLOWED_PREFIXES_ENV` (unset: not
    confined)."""
    raw = environ.get(ALLOWED_PREFIXES_ENV)
    if raw is None:
        return
    prefixes = [p.strip() for p in raw.split(",") if p.strip()][:MAX_PREFIXES]
    problems = check_paths(paths, prefixes, "its namespace")
    if problems:
        raise PathNotAllowedError(f"{where}: " + "; ".join(problems))
