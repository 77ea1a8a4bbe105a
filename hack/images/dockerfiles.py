"""Render images/<image>/Dockerfile from images/images.yaml, for those who build with
Docker; the same stages and commands as hack/images/build.py.

    python hack/images/dockerfiles.py          # write them
    python hack/images/dockerfiles.py --check  # fail if one is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import definitions

_MOUNTS = (
    "--mount=type=bind,target=/src "
    f"--mount=from=ghcr.io/astral-sh/uv:{definitions.UV_VERSION},source=/uv,"
    "target=/usr/local/bin/uv "
    "--mount=type=cache,target=/root/.cache/uv"
)


def _run(commands: list[str], mounts: str = "") -> list[str]:
    lines = [f"RUN {mounts + ' ' if mounts else ''}set -eux; \\"]
    for i, command in enumerate(commands):
        lines.append(f"    {command}" + ("; \\" if i < len(commands) - 1 else ""))
    return lines


def render(image: definitions.Image, base: definitions.Base) -> str:
    """The Dockerfile of ``image``."""
    env = image.environment()
    lines = [
        "# syntax=docker/dockerfile:1",
        "# Generated from images/images.yaml by hack/images/dockerfiles.py: do not edit.",
        f"# {image.reference}: {image.description}.",
        "# Build from the repository root:",
        "#",
        f"#   docker build -f images/{image.key}/Dockerfile -t {image.reference} .",
        "#",
        "# `make images` builds the same image without Docker (hack/images/build.py).",
        f"FROM debian:{base.suite}-slim",
        'SHELL ["/bin/bash", "-euo", "pipefail", "-c"]',
        "ENV DEBIAN_FRONTEND=noninteractive",
        *_run(base.commands()),
        "ENV " + " \\\n    ".join(f"{k}={json.dumps(v)}" for k, v in env.items()),
        *_run(image.deps_commands(), _MOUNTS),
        *_run(image.app_commands(), _MOUNTS),
        f"USER {base.uid}:{base.uid}",
    ]
    if image.ports:
        lines.append("EXPOSE " + " ".join(str(p) for p in image.ports))
    lines.append(f"ENTRYPOINT {json.dumps(list(image.entrypoint))}")
    return "\n".join(lines) + "\n"


def render_ignore() -> str:
    """The build context's filter: only what /src holds."""
    lines = [
        "# Generated from hack/images/definitions.py SOURCES: do not edit.",
        "# Only what the image is built from: the distribution's sources and its pins.",
        "*",
        *(
            f"!{path}" + ("/" if (definitions.REPO / path).is_dir() else "")
            for path in definitions.SOURCES
        ),
        "**/__pycache__",
        "**/*.pyc",
    ]
    return "\n".join(lines) + "\n"


def outputs(image: definitions.Image, base: definitions.Base) -> dict[Path, str]:
    """The files rendered for ``image``: its Dockerfile and the context filter."""
    directory = definitions.REPO / "images" / image.key
    return {
        directory / "Dockerfile": render(image, base),
        directory / "Dockerfile.dockerignore": render_ignore(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check they are current")
    args = parser.parse_args()
    base = definitions.load_base()
    stale = []
    for image in definitions.load_images().values():
        for path, text in outputs(image, base).items():
            if path.is_file() and path.read_text() == text:
                continue
            stale.append(path)
            if not args.check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    if args.check and stale:
        names = ", ".join(str(p.relative_to(definitions.REPO)) for p in stale)
        print(f"out of date (run `make dockerfiles`): {names}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
