"""Reading feature definitions from YAML files, remembering where each field is; pure
but for reading the files.

Problems are reported as ``FILE:LINE: Kind/name: spec.path: message``, so every
document keeps a map from field paths to the lines they start on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from featurekube.spec import v1alpha1

__all__ = [
    "KINDS",
    "Document",
    "FieldPath",
    "Resource",
    "format_path",
    "iter_yaml_files",
    "load_documents",
    "parse_resource",
]

Resource = v1alpha1.FeatureView | v1alpha1.FeatureService
FieldPath = tuple[str | int, ...]
KINDS: Mapping[str, type[v1alpha1.FeatureView] | type[v1alpha1.FeatureService]] = {
    "FeatureView": v1alpha1.FeatureView,
    "FeatureService": v1alpha1.FeatureService,
}


@dataclass(frozen=True)
class Document:
    """One YAML document of a file, with the line each of its fields starts on."""

    path: Path
    """The file."""
    index: int
    """Position of the document in its file, from 0."""
    body: Any
    """The parsed document (normally a mapping)."""
    lines: Mapping[FieldPath, int] = field(default_factory=dict)
    """Field path -> 1-based line; () is the document's first line."""

    @property
    def api_version(self) -> str | None:
        value = self.body.get("apiVersion") if isinstance(self.body, dict) else None
        return value if isinstance(value, str) else None

    @property
    def kind(self) -> str | None:
        value = self.body.get("kind") if isinstance(self.body, dict) else None
        return value if isinstance(value, str) else None

    @property
    def name(self) -> str | None:
        meta = self.body.get("metadata") if isinstance(self.body, dict) else None
        value = meta.get("name") if isinstance(meta, dict) else None
        return value if isinstance(value, str) else None

    @property
    def is_ours(self) -> bool:
        """Whether this is a featurekube.dev/v1alpha1 kind featurekube knows."""
        return self.api_version == v1alpha1.API_VERSION and self.kind in KINDS

    def line_of(self, path: FieldPath) -> int:
        """The line of ``path``, or of its nearest ancestor present in the file."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return 1


def iter_yaml_files(root: Path) -> Iterator[Path]:
    """``root`` itself if a file, else every *.yaml and *.yml below it, sorted."""
    if root.is_file():
        yield root
        return
    yield from sorted(
        p
        for p in root.rglob("*")
        if p.suffix in (".yaml", ".yml")
        and p.is_file()
        # .git, .github and the like hold no feature definitions.
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def _construct(node: yaml.Node, path: FieldPath, lines: dict[FieldPath, int]) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node))
            # A field is where its key is: `spec:` points at that line, not the next.
            lines[(*path, str(key))] = key_node.start_mark.line + 1
            result[key] = _construct(value_node, (*path, str(key)), lines)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*path, i), lines) for i, item in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node))


def load_documents(paths: Iterable[Path]) -> list[Document]:
    """Every non-empty YAML document of ``paths``; raises ``yaml.YAMLError`` on bad YAML."""
    documents = []
    for path in paths:
        with path.open(encoding="utf-8") as stream:
            for index, node in enumerate(yaml.compose_all(stream, Loader=yaml.SafeLoader)):
                if node is None:
                    continue
                lines: dict[FieldPath, int] = {}
                body = _construct(node, (), lines)
                if body is None:
                    continue
                documents.append(Document(path, index, body, lines))
    return documents


def parse_resource(document: Document) -> Resource:
    """The document as a FeatureView or FeatureService model.

    Raises ``pydantic.ValidationError`` (its error locations are field paths of the
    document) or ``ValueError`` if the document is not one of featurekube's kinds.
    """
    if not document.is_ours:
        raise ValueError(
            f"not a featurekube object: apiVersion {document.api_version!r}, kind "
            f"{document.kind!r} (featurekube reads {v1alpha1.API_VERSION} "
            f"{' and '.join(KINDS)})"
        )
    model = KINDS[document.kind or ""]
    resource: Resource = model.model_validate(document.body)
    return resource


def format_path(path: FieldPath) -> str:
    """``('spec', 'features', 0, 'type')`` -> ``'spec.features[0].type'``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
