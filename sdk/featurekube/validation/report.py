"""Every check over a set of documents or a directory, gathered into a :class:`Report`.

:func:`check_documents` is pure, for callers that hold documents already (the
operator, ``featurekube plan``); :func:`validate_path` reads the files first, through
:mod:`featurekube.spec.loader`, which is the only I/O of this package.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from featurekube.spec import loader
from featurekube.validation import problems, references, schema, sql, streams

__all__ = ["Report", "check_documents", "load_files", "validate_path"]


@dataclass(frozen=True)
class Report:
    """What validating a directory found."""

    files: tuple[Path, ...]
    """The YAML files read."""
    documents: tuple[loader.Document, ...]
    """Their documents, in file order."""
    problems: tuple[problems.Problem, ...]
    """Every problem, by file and line."""

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong."""
        return not self.problems

    def count(self, kind: str) -> int:
        """How many objects of featurekube's ``kind`` the files define."""
        return sum(1 for d in self.documents if d.is_ours and d.kind == kind)

    def summary(self) -> str:
        """``4 FeatureViews, 1 FeatureService, no problems``."""
        parts = [_plural(self.count(kind), kind) for kind in loader.KINDS]
        parts.append(_plural(len(self.problems), "problem") if self.problems else "no problems")
        return ", ".join(parts)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def load_files(
    paths: Iterable[Path],
) -> tuple[list[loader.Document], list[problems.Problem]]:
    """The documents of every file, and a problem for each file that cannot be read
    or is not valid YAML (its documents are left out)."""
    documents: list[loader.Document] = []
    found: list[problems.Problem] = []
    for path in paths:
        try:
            documents += loader.load_documents([path])
        except yaml.YAMLError as exc:
            line, message = _yaml_error(exc)
            found.append(problems.Problem(str(path), line, None, None, None, message))
        except UnicodeDecodeError as exc:
            message = f"is not UTF-8 text ({exc.reason} at byte {exc.start}): save it as UTF-8"
            found.append(problems.Problem(str(path), 1, None, None, None, message))
        except OSError as exc:
            message = f"cannot be read: {exc.strerror or exc}"
            found.append(problems.Problem(str(path), 1, None, None, None, message))
    return documents, found


def check_documents(
    documents: Sequence[loader.Document], *, complete: bool = True
) -> list[problems.Problem]:
    """Every problem of ``documents``, by file and line: objects that are not ours, the
    schema, objects defined twice, references between objects, entity key types, SQL.

    ``complete`` is False when some files of the set could not be read, so that views
    they may define are not reported as unknown.
    """
    found: list[problems.Problem] = []
    objects: list[schema.Parsed] = []
    for document in documents:
        parsed, document_problems = schema.check_document(document)
        found += document_problems
        if parsed is not None:
            objects.append(parsed)
    declared = {key for d in documents if (key := references.key_of(d)) is not None}
    found += references.check_definitions(documents)
    found += references.check_entities(objects)
    found += references.check_services(objects, declared, complete=complete)
    found += sql.check_transformations(objects)
    found += streams.check_streams(objects)
    return problems.sort_problems(found)


def validate_path(root: Path) -> Report:
    """Validate ``root``: a YAML file, or every *.yaml and *.yml file below a directory.

    Paths in the report are spelled as ``root`` is (a relative root gives relative
    paths). Raises ``FileNotFoundError`` if ``root`` does not exist.
    """
    if not root.exists():
        raise FileNotFoundError(root)
    files = tuple(loader.iter_yaml_files(root))
    documents, unreadable = load_files(files)
    found = unreadable + check_documents(documents, complete=not unreadable)
    return Report(files, tuple(documents), tuple(problems.sort_problems(found)))


def _yaml_error(exc: yaml.YAMLError) -> tuple[int, str]:
    """The line of a YAML error and what it says, as PyYAML's marks tell them."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return 1, f"the YAML does not parse: {exc}"
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    message = f"the YAML does not parse: {exc.problem or exc.context or 'invalid YAML'}"
    if exc.context and exc.problem:
        context = exc.context
        if exc.context_mark is not None and exc.context_mark.line + 1 != line:
            context += f" that starts on line {exc.context_mark.line + 1}"
        message += f" ({context})"
    return line, message
