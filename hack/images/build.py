"""Build featurekube's images as OCI archives without Docker; optionally load them
into the local platform's node.

    python hack/images/build.py [--load] [--state-dir DIR] [IMAGE ...]

IMAGE may also be ``spark-operator`` (built only when named): the spark image plus
the Kubeflow Spark Operator's binary (hack/spark-operator/build.sh).

Each image is three layers (see images/images.yaml): the Debian base of
debian-base.sh, a deps layer, an app layer. A stage runs its commands in a chroot on
an overlay whose lower directories are the layers below, in a mount namespace of its
own (the machine's mounts never change), and its upper directory becomes the layer.
Layers and archives are cached under ~/.cache/featurekube/images by a hash of their
inputs, so a change to featurekube's sources rebuilds only the small app layer.
Prints one archive path per image on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import definitions

from featurekube._platform import oci, spark_operator

CACHE = Path(os.environ.get("FEATUREKUBE_CACHE", Path.home() / ".cache" / "featurekube"))
IMAGES_CACHE = CACHE / "images"
# Left in a stage's upper directory by the build itself, not part of the image.
_BUILD_LEFTOVERS = ("src", "tmp", "root/.cache", "run/build", "var/cache/debconf/templates.dat-old")
# The machine's trust, for the stages' downloads only (PyPI, Maven Central): where
# egress goes through a proxy with its own CA, the image's own bundle lacks it.
_HOST_CA = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))
_HOST_JAVA_CA = Path("/etc/ssl/certs/java/cacerts")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _hash(*parts: str | bytes) -> str:
    sha = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        sha.update(len(data).to_bytes(8, "big") + data)
    return sha.hexdigest()[:16]


def source_files() -> list[str]:
    """The files of /src: the distribution's sources, tracked or new, never ignored."""
    listed = subprocess.run(
        [
            "git",
            "ls-files",
            "--cached",
            "--others",
            "--exclude-standard",
            "--",
            *definitions.SOURCES,
        ],
        cwd=definitions.REPO,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    ).stdout.split()
    return sorted(p for p in listed if (definitions.REPO / p).is_file())


@functools.cache
def _files_hash(paths: tuple[str, ...]) -> str:
    # Every plan of one run hashes the same sources: read them once.
    return _hash(*(p + "\0" + _hash((definitions.REPO / p).read_bytes()) for p in paths))


def debian_base() -> Path:
    """The base root file system, made (once) by debian-base.sh."""
    made = subprocess.run(
        [str(definitions.REPO / "hack" / "images" / "debian-base.sh")],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return Path(made.stdout.strip().splitlines()[-1])


def _copy_sources(files: Sequence[str], into: Path) -> None:
    for path in files:
        target = into / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(definitions.REPO / path, target)


def run_stage(
    lowers: Sequence[Path],
    upper: Path,
    commands: Sequence[str],
    env: dict[str, str],
    sources: Path,
) -> None:
    """Run ``commands`` in a chroot on an overlay of ``lowers`` (lowest first), with
    the changes landing in ``upper``; then drop what the build itself left there."""
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    with tempfile.TemporaryDirectory(dir=upper.parent) as tmp:
        work, merged = Path(tmp) / "work", Path(tmp) / "merged"
        work.mkdir()
        merged.mkdir()
        # The machine's own uv cache: the venvs' installs have filled it already.
        uv_cache = Path(os.environ.get("UV_CACHE_DIR", Path.home() / ".cache" / "uv"))
        uv_cache.mkdir(parents=True, exist_ok=True)
        lower = ":".join(str(p) for p in reversed(lowers))
        inside = " && ".join(f"( {c} )" for c in commands)
        chroot_env = [f"{k}={v}" for k, v in env.items()] + [
            "HOME=/root",
            "DEBIAN_FRONTEND=noninteractive",
            "UV_LINK_MODE=copy",
            "UV_PYTHON_DOWNLOADS=never",
            "SSL_CERT_FILE=/run/build/ca-certificates.crt",
            "JAVA_TOOL_OPTIONS=-Djavax.net.ssl.trustStore=/run/build/cacerts",
        ]
        script = f"""set -e
mount -t overlay overlay -o lowerdir={lower},upperdir={upper},workdir={work} {merged}
mount -t proc proc {merged}/proc
mkdir -p {merged}/src {merged}/root/.cache/uv
mount --bind -o ro {sources} {merged}/src
mount --bind {uv_cache} {merged}/root/.cache/uv
mount --bind /etc/resolv.conf {merged}/etc/resolv.conf
mkdir -p {merged}/run/build
touch {merged}/run/build/ca-certificates.crt {merged}/run/build/cacerts
mount --bind -o ro {_HOST_CA} {merged}/run/build/ca-certificates.crt
if [ -f {_HOST_JAVA_CA} ]; then mount --bind -o ro {_HOST_JAVA_CA} {merged}/run/build/cacerts; fi
touch {merged}/usr/local/bin/uv && mount --bind -o ro {uv} {merged}/usr/local/bin/uv
chroot {merged} /usr/bin/env -i {definitions.shell_words(chroot_env)} \\
  /bin/bash -euo pipefail -c {definitions.shell_words([inside])}
"""
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "--", "bash", "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if done.returncode != 0:
            tail = "\n".join(done.stdout.splitlines()[-40:])
            raise SystemExit(f"image build stage failed in {upper.name}:\n{tail}")
    for leftover in (*_BUILD_LEFTOVERS, "usr/local/bin/uv"):
        path = upper / leftover
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def _layer(
    key: str,
    lowers: Sequence[Path],
    commands: Sequence[str],
    env: dict[str, str],
    sources: Path,
) -> tuple[Path, oci.Layer]:
    """The stage's directory and packed layer, built unless cached under ``key``."""
    directory, blob = IMAGES_CACHE / "layers" / key, IMAGES_CACHE / "layers" / f"{key}.tar.gz"
    layer = oci.Layer.load(blob)
    if layer is not None and directory.is_dir():
        return directory, layer
    partial = directory.with_name(key + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    started = time.monotonic()
    run_stage(lowers, partial, commands, env, sources)
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)
    layer = oci.pack_layer(directory, blob)
    _log(f"  layer {key}: {layer.size / 2**20:.0f} MiB in {time.monotonic() - started:.0f} s")
    return directory, layer


@dataclasses.dataclass(frozen=True)
class _Plan:
    """An image's cache keys, config and archive path: known before anything is built."""

    image: definitions.Image
    base_rootfs: Path
    deps_key: str
    app_key: str
    config: oci.ImageConfig
    archive: Path


def _plan(image: definitions.Image, base_rootfs: Path, files: Sequence[str]) -> _Plan:
    base_key = base_rootfs.parent.name
    env = image.environment()
    repo = definitions.REPO
    deps_key = "deps-" + _hash(
        base_key,
        definitions.UV_VERSION,
        repr(image.packages),
        image.extra,
        repr(image.deps_commands()),
        repr(sorted(env.items())),
        (repo / "requirements.lock").read_bytes(),
        (repo / "pyproject.toml").read_bytes(),
        # The Spark image's jars are those spark_session names.
        (repo / "sdk/featurekube/spark_session.py").read_bytes() if image.deps else b"",
    )
    app_key = "app-" + _hash(
        deps_key, repr(image.app_commands()), _files_hash(tuple(files)), image.key
    )
    uid = definitions.load_base().uid
    config = oci.ImageConfig(
        image.reference,
        entrypoint=list(image.entrypoint),
        env=[f"{k}={v}" for k, v in env.items()],
        user=f"{uid}:{uid}",
        labels={"org.opencontainers.image.description": image.description},
        ports=list(image.ports),
    )
    archive = IMAGES_CACHE / f"{image.key}-{_hash(app_key, repr(config))}.oci.tar"
    return _Plan(image, base_rootfs, deps_key, app_key, config, archive)


def _layers(plan: _Plan, files: Sequence[str]) -> list[oci.Layer]:
    """The base, deps and app layers of ``plan``, built unless cached."""
    base_rootfs, env = plan.base_rootfs, plan.image.environment()
    base_blob = IMAGES_CACHE / "layers" / f"{base_rootfs.parent.name}.tar.gz"
    base_layer = oci.Layer.load(base_blob) or oci.pack_layer(base_rootfs, base_blob)
    with tempfile.TemporaryDirectory() as tmp:
        sources = Path(tmp) / "src"
        _copy_sources(files, sources)
        deps_commands = plan.image.deps_commands()
        deps_dir, deps_layer = _layer(plan.deps_key, [base_rootfs], deps_commands, env, sources)
        app_commands = plan.image.app_commands()
        lowers = [base_rootfs, deps_dir]
        _, app_layer = _layer(plan.app_key, lowers, app_commands, env, sources)
    return [base_layer, deps_layer, app_layer]


def build(image: definitions.Image, base_rootfs: Path, files: Sequence[str]) -> Path:
    """Build ``image`` (or find it built) and return its archive."""
    plan = _plan(image, base_rootfs, files)
    if plan.archive.is_file():
        return plan.archive
    _log(f"building {image.reference}")
    oci.write_layered_image(_layers(plan, files), plan.config, plan.archive)
    return plan.archive


SPARK_OPERATOR = "spark-operator"
"""The Kubeflow Spark Operator's image, built only when named: the spark image (Java,
spark-submit at $SPARK_HOME, the non-root user) plus one layer with the operator's
binary from hack/spark-operator/build.sh."""
_SPARK_OPERATOR_BIN = "/usr/local/bin/spark-operator"


def build_spark_operator(spark: definitions.Image, base_rootfs: Path, files: Sequence[str]) -> Path:
    """Build the Spark Operator's image (or find it built) and return its archive."""
    pins = definitions.REPO / "hack" / "spark-operator" / "versions.env"
    version = next(
        line.partition("=")[2].strip()
        for line in pins.read_text().splitlines()
        if line.startswith("SPARK_OPERATOR_VERSION=")
    )
    if version != spark_operator.VERSION:
        raise SystemExit(
            f"featurekube._platform.spark_operator.IMAGE is {spark_operator.IMAGE}, but "
            f"hack/spark-operator/versions.env pins the Spark Operator {version}"
        )
    built = subprocess.run(
        [str(definitions.REPO / "hack" / "spark-operator" / "build.sh")],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    binaries = Path(built.stdout.strip().splitlines()[-1])
    plan = _plan(spark, base_rootfs, files)
    config = dataclasses.replace(
        plan.config,
        name=spark_operator.IMAGE,
        # tini reaps the spark-submit JVMs the controller starts.
        entrypoint=["/usr/bin/tini", "-s", "--", _SPARK_OPERATOR_BIN],
        labels={
            "org.opencontainers.image.description": (
                f"the Kubeflow Spark Operator {version} on featurekube's Spark image"
            )
        },
        ports=[8080, 8081, 9443],
    )
    key = _hash(plan.archive.name, binaries.name, repr(config))
    archive = IMAGES_CACHE / f"{SPARK_OPERATOR}-{key}.oci.tar"
    if archive.is_file():
        return archive
    _log(f"building {spark_operator.IMAGE}")
    layer_dir = IMAGES_CACHE / "layers" / f"{SPARK_OPERATOR}-{binaries.name}"
    binary = layer_dir / _SPARK_OPERATOR_BIN.lstrip("/")
    if not binary.is_file():
        binary.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(binaries / SPARK_OPERATOR, binary)
        binary.chmod(0o755)
    blob = layer_dir.with_name(layer_dir.name + ".tar.gz")
    layer = oci.Layer.load(blob) or oci.pack_layer(layer_dir, blob)
    oci.write_layered_image([*_layers(plan, files), layer], config, archive)
    return archive


@contextlib.contextmanager
def _exclusive() -> Iterator[None]:
    """One build at a time on this machine: builds share layer directories."""
    IMAGES_CACHE.mkdir(parents=True, exist_ok=True)
    with (IMAGES_CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def collect(current: Sequence[_Plan], built: Sequence[Path]) -> None:
    """Delete the layers no current image uses and the superseded archives of the images
    just built: a Spark image is 1.3 GB, and every change of the sources makes another."""
    keep = {key for plan in current for key in (plan.deps_key, plan.app_key)}
    for path in (IMAGES_CACHE / "layers").iterdir():
        key = path.name.split(".", 1)[0]
        if re.fullmatch(r"(deps|app)-[0-9a-f]{16}", key) and key not in keep:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for archive in built:
        image = archive.name.rsplit("-", 1)[0]
        for old in IMAGES_CACHE.glob(f"{image}-*.oci.tar"):
            if old != archive and re.fullmatch(
                rf"{re.escape(image)}-[0-9a-f]{{16}}\.oci\.tar", old.name
            ):
                old.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", help="images to build (default: all)")
    parser.add_argument("--load", action="store_true", help="import them into the node")
    parser.add_argument("--state-dir", type=Path, help="the platform's state directory")
    args = parser.parse_args(argv)
    known = definitions.load_images()
    chosen = args.images or list(known)
    if unknown := sorted(set(chosen) - {*known, SPARK_OPERATOR}):
        parser.error(
            f"no image named {', '.join(unknown)}; images.yaml defines {', '.join(known)}, "
            f"and {SPARK_OPERATOR} is the spark image with the Spark Operator"
        )
    base_rootfs = debian_base()
    files = source_files()
    with _exclusive():
        archives = [
            build_spark_operator(known["spark"], base_rootfs, files)
            if name == SPARK_OPERATOR
            else build(known[name], base_rootfs, files)
            for name in chosen
        ]
        collect([_plan(image, base_rootfs, files) for image in known.values()], archives)
    if args.load:
        from featurekube._platform import platform

        settings = platform.PlatformSettings(
            **({"state_dir": args.state_dir} if args.state_dir else {})
        )
        platform.LocalPlatform(settings).load_images(archives)
    for archive in archives:
        print(archive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
