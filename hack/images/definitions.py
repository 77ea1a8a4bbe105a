"""featurekube's images as images/images.yaml defines them, and the commands of each
build stage; pure.

Both builds read this module: hack/images/build.py runs the commands in a chroot
(no Docker), hack/images/dockerfiles.py renders them as the Dockerfiles' RUN lines.
One definition, so the two cannot install different things or start differently.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEFINITIONS = REPO / "images" / "images.yaml"
VERSIONS = REPO / "hack" / "images" / "versions.env"

VENV = "/opt/featurekube/venv"
APP = "/opt/featurekube/app"
PYTHON = f"{VENV}/bin/python"
SOURCES = (
    "pyproject.toml",
    "requirements.lock",
    "README.md",
    "sdk",
    "operator",
    "feature_server",
    "images/spark/entrypoint.sh",
)
"""What /src holds while a stage runs: the distribution's sources and its pins."""
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UV_VERSION = "0.13.8"
"""The uv the stages run (the Makefile's); the Dockerfiles mount its official image."""


@dataclass(frozen=True)
class Base:
    """The Debian base every image starts from (hack/images/versions.env)."""

    suite: str
    packages: tuple[str, ...]
    uid: int

    def commands(self) -> list[str]:
        """What hack/images/debian-base.sh runs in the chroot after debootstrap."""
        return [
            "apt-get update -qq && apt-get install -y -qq --no-install-recommends "
            f"{' '.join(self.packages)} && apt-get clean && rm -rf /var/lib/apt/lists/*",
            f"groupadd --gid {self.uid} featurekube && useradd --uid {self.uid} "
            f"--gid {self.uid} --no-create-home --home-dir /nonexistent "
            "--shell /usr/sbin/nologin featurekube",
        ]


@dataclass(frozen=True)
class Image:
    """One image: what it installs on the base, and how its container starts."""

    key: str
    """Its directory under images/."""
    name: str
    """The repository, without the tag."""
    tag: str
    description: str
    extra: str
    """featurekube's optional dependencies (pyproject.toml) it installs: an extra, or
    several separated by commas."""
    entrypoint: tuple[str, ...]
    packages: tuple[str, ...] = ()
    deps: tuple[str, ...] = ()
    app: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[int, ...] = ()

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.tag}"

    def environment(self) -> dict[str, str]:
        """The image's environment, as its containers and its build steps see it."""
        return {
            "PATH": f"{APP}/bin:{VENV}/bin:{SYSTEM_PATH}",
            "PYTHONPATH": APP,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }

    def deps_commands(self) -> list[str]:
        """The deps stage: Debian packages, then the pinned dependencies of ``extra``
        (resolved within requirements.lock without building featurekube)."""
        commands = []
        if self.packages:
            commands.append(
                "apt-get update -qq && apt-get install -y -qq --no-install-recommends "
                f"{' '.join(self.packages)} && apt-get clean && rm -rf /var/lib/apt/lists/*_*"
            )
        extras = " ".join(f"--extra {e.strip()}" for e in self.extra.split(","))
        commands.append(
            f"uv venv -q --python /usr/bin/python3 {VENV} && "
            f"uv pip compile -q /src/pyproject.toml {extras} "
            "-c /src/requirements.lock --no-header -o /tmp/requirements.txt && "
            f"uv pip install -q --compile-bytecode --python {PYTHON} "
            "-r /tmp/requirements.txt && rm /tmp/requirements.txt"
        )
        return commands + list(self.deps)

    def app_commands(self) -> list[str]:
        """The app stage: featurekube itself, built from a copy of /src (a build
        writes beside its sources), into a directory of its own."""
        return [
            "cp -r /src /tmp/featurekube && "
            f"uv pip install -q --no-deps --compile-bytecode --python {PYTHON} "
            f"--target {APP} /tmp/featurekube && rm -rf /tmp/featurekube",
            *self.app,
        ]


def load_base(path: Path = VERSIONS) -> Base:
    """The base, from versions.env (shell assignments of plain or double-quoted values)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = shlex.split(value)[0] if value.strip() else ""
    return Base(
        values["DEBIAN_SUITE"], tuple(values["BASE_PACKAGES"].split()), int(values["IMAGE_UID"])
    )


def load_images(path: Path = DEFINITIONS) -> dict[str, Image]:
    """Every image images.yaml defines, by its key."""
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    tag = str(document["version"])
    return {key: _image(key, tag, body) for key, body in document["images"].items()}


def _image(key: str, tag: str, body: Mapping[str, Any]) -> Image:
    unknown = set(body) - {
        "name", "description", "extra", "entrypoint", "packages", "deps", "app", "env", "ports",
    }  # fmt: skip
    if unknown:
        raise ValueError(f"images.yaml: image {key}: unknown fields {sorted(unknown)}")
    return Image(
        key=key,
        name=body["name"],
        tag=tag,
        description=" ".join(str(body["description"]).split()),
        extra=body["extra"],
        entrypoint=tuple(body["entrypoint"]),
        packages=tuple(body.get("packages") or ()),
        deps=tuple(_one_line(c) for c in body.get("deps") or ()),
        app=tuple(_one_line(c) for c in body.get("app") or ()),
        env=dict(body.get("env") or {}),
        ports=tuple(body.get("ports") or ()),
    )


def _one_line(command: str) -> str:
    return " ".join(command.split())


def shell_words(words: Sequence[str]) -> str:
    """``words`` as one shell command line."""
    return " ".join(shlex.quote(w) for w in words)
