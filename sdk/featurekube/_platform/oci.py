"""OCI image archives written from directories, without Docker; does I/O.

The result is an OCI image layout as one tar file, the form ``ctr images import``
takes. Each layer is a directory packed on its own (:func:`pack_layer`), so a slow
layer (a Debian base, a virtualenv) is packed once and reused under faster-changing
ones. An overlayfs upper directory packs as a layer: its whiteouts (0/0 character
devices, opaque directories) become the OCI ``.wh.`` entries. Builds are
reproducible: entries are sorted, owned by root, and dated at the epoch, so the same
directories always give the same digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ImageConfig",
    "Layer",
    "image_names",
    "pack_layer",
    "write_image",
    "write_layered_image",
]

_EPOCH = "1970-01-01T00:00:00Z"
_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ImageConfig:
    """What a container of the image runs, and the image's name."""

    name: str
    """Full reference, e.g. ``registry.k8s.io/pause:3.10.2``."""
    entrypoint: Sequence[str] = ()
    cmd: Sequence[str] = ()
    env: Sequence[str] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    workdir: str = "/"
    user: str = ""
    """``uid[:gid]``; empty runs as root unless the pod says otherwise."""
    labels: dict[str, str] = field(default_factory=dict)
    ports: Sequence[int] = ()
    """TCP ports the image's program listens on (documentation, as Docker's EXPOSE)."""


@dataclass(frozen=True)
class Layer:
    """A packed layer: a gzip-compressed tar and what a manifest says of it."""

    path: Path
    digest: str
    """Of the compressed blob."""
    size: int
    diff_id: str
    """Of the uncompressed tar."""

    def save(self) -> None:
        """Record the digests beside the blob, for :meth:`load`."""
        record = {"digest": self.digest, "size": self.size, "diff_id": self.diff_id}
        _sidecar(self.path).write_text(json.dumps(record))

    @classmethod
    def load(cls, path: Path) -> Layer | None:
        """The layer packed at ``path`` earlier, or None when there is none."""
        try:
            record = json.loads(_sidecar(path).read_text())
        except (OSError, ValueError):
            return None
        if not path.is_file() or path.stat().st_size != record["size"]:
            return None
        return cls(path, record["digest"], record["size"], record["diff_id"])


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _digest_file(path: Path) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return "sha256:" + sha.hexdigest(), size


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def _opaque(path: Path) -> bool:
    for attribute in ("trusted.overlay.opaque", "user.overlay.opaque"):
        try:
            if os.getxattr(path, attribute, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def _write_layer(rootfs: Path, raw: Path) -> None:
    with tarfile.open(raw, "w", format=tarfile.PAX_FORMAT) as layer:
        for directory, dirs, files in os.walk(rootfs):
            dirs.sort()
            here = Path(directory)
            if here != rootfs and _opaque(here):
                _add_bytes(layer, str(here.relative_to(rootfs) / ".wh..wh..opq"), b"")
            for name in sorted([*dirs, *files]):
                path = here / name
                arcname = str(path.relative_to(rootfs))
                mode = path.lstat()
                if stat.S_ISCHR(mode.st_mode) and mode.st_rdev == 0:
                    # overlayfs marks a deleted file so; OCI marks it by name.
                    _add_bytes(layer, str(Path(arcname).with_name(".wh." + name)), b"")
                elif stat.S_ISSOCK(mode.st_mode):
                    continue
                else:
                    layer.add(path, arcname=arcname, recursive=False, filter=_normalise)


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = _normalise(tarfile.TarInfo(name))
    info.size, info.mode = len(data), 0o644
    archive.addfile(info, io.BytesIO(data))


def pack_layer(rootfs: Path, out: Path) -> Layer:
    """Pack the directory ``rootfs`` as a layer blob at ``out`` (written beside it and
    renamed into place), with its digests recorded for :meth:`Layer.load`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        raw, packed = Path(tmp) / "layer.tar", Path(tmp) / "layer.tar.gz"
        _write_layer(rootfs, raw)
        diff_id, _ = _digest_file(raw)
        with (
            raw.open("rb") as src,
            packed.open("wb") as dst_file,
            gzip.GzipFile(fileobj=dst_file, mode="wb", mtime=0, compresslevel=6) as dst,
        ):
            while chunk := src.read(_CHUNK):
                dst.write(chunk)
        digest, size = _digest_file(packed)
        packed.replace(out)
    layer = Layer(out, digest, size, diff_id)
    layer.save()
    return layer


def write_image(rootfs: Path, config: ImageConfig, out: Path) -> str:
    """Write ``rootfs`` as a one-layer image archive at ``out``; return the manifest digest.

    The archive is written beside ``out`` and renamed into place, so a reader never
    sees half an image.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        layer = pack_layer(rootfs, Path(tmp) / "layer.tar.gz")
        return write_layered_image([layer], config, out)


def write_layered_image(layers: Sequence[Layer], config: ImageConfig, out: Path) -> str:
    """Write an image of ``layers`` (lowest first) at ``out``; return the manifest digest."""
    out.parent.mkdir(parents=True, exist_ok=True)
    runs: dict[str, object] = {"Env": list(config.env), "WorkingDir": config.workdir}
    if config.entrypoint:
        runs["Entrypoint"] = list(config.entrypoint)
    if config.cmd:
        runs["Cmd"] = list(config.cmd)
    if config.user:
        runs["User"] = config.user
    if config.labels:
        runs["Labels"] = dict(config.labels)
    if config.ports:
        runs["ExposedPorts"] = {f"{port}/tcp": {} for port in config.ports}
    image_config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": _EPOCH,
            "config": runs,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": [
                {"created": _EPOCH, "created_by": "featurekube oci.write_layered_image"}
                for _ in layers
            ],
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": _MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _digest(image_config),
                "size": len(image_config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer.digest,
                    "size": layer.size,
                }
                for layer in layers
            ],
        },
        sort_keys=True,
    ).encode()
    tag = config.name.rpartition("/")[2].partition(":")[2] or "latest"
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": _MANIFEST,
                    "digest": _digest(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": config.name,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }
            ],
        },
        sort_keys=True,
    ).encode()
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        partial = Path(tmp) / "image.tar"
        with tarfile.open(partial, "w") as archive:
            _add_bytes(archive, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            _add_bytes(archive, "index.json", index)
            _add_bytes(archive, f"blobs/sha256/{_digest(image_config)[7:]}", image_config)
            _add_bytes(archive, f"blobs/sha256/{_digest(manifest)[7:]}", manifest)
            for layer in dict.fromkeys(layers):
                archive.add(
                    layer.path, arcname=f"blobs/sha256/{layer.digest[7:]}", filter=_normalise
                )
        partial.replace(out)
    return _digest(manifest)


def image_names(archive: Path) -> list[str]:
    """The image references an archive's index names (``io.containerd.image.name``,
    the names ``ctr images import`` gives them); [] when it is no readable OCI archive.

    Reads only the archive's tar headers and its small ``index.json``.
    """
    try:
        with tarfile.open(archive) as tar:
            member = tar.extractfile("index.json")
            index = json.loads(member.read()) if member is not None else {}
    except (OSError, KeyError, tarfile.TarError, ValueError):
        return []
    manifests = index.get("manifests", []) if isinstance(index, dict) else []
    names = (
        (entry.get("annotations") or {}).get("io.containerd.image.name")
        for entry in manifests
        if isinstance(entry, dict)
    )
    return [name for name in names if isinstance(name, str)]
