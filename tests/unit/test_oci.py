from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

from featurekube._platform import oci


def _rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "probe").write_bytes(b"\x7fELF-not-really")
    (root / "bin" / "probe").chmod(0o755)
    (root / "etc").mkdir()
    (root / "etc" / "motd").write_text("hello\n")
    return root


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def test_an_image_archive_is_an_oci_layout_whose_digests_match_its_blobs(tmp_path: Path) -> None:
    config = oci.ImageConfig(
        "featurekube.dev/node/probe:dev", entrypoint=["/bin/probe"], user="65532"
    )
    digest = oci.write_image(_rootfs(tmp_path), config, tmp_path / "probe.oci.tar")

    files = _members(tmp_path / "probe.oci.tar")
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    (entry,) = json.loads(files["index.json"])["manifests"]
    assert entry["digest"] == digest
    assert entry["annotations"]["io.containerd.image.name"] == "featurekube.dev/node/probe:dev"
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "dev"
    manifest = json.loads(files[f"blobs/sha256/{digest[7:]}"])
    image = json.loads(files[f"blobs/sha256/{manifest['config']['digest'][7:]}"])
    assert image["config"]["Entrypoint"] == ["/bin/probe"]
    assert image["config"]["User"] == "65532"
    (layer,) = manifest["layers"]
    raw = gzip.decompress(files[f"blobs/sha256/{layer['digest'][7:]}"])
    assert image["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(raw).hexdigest()]


def test_the_layer_holds_the_directory_owned_by_root_with_modes_kept(tmp_path: Path) -> None:
    oci.write_image(_rootfs(tmp_path), oci.ImageConfig("x/y:z"), tmp_path / "i.tar")

    files = _members(tmp_path / "i.tar")
    layer_name = next(
        n for n, d in files.items() if n.startswith("blobs/") and d[:2] == b"\x1f\x8b"
    )
    with tarfile.open(fileobj=gzip.GzipFile(fileobj=io.BytesIO(files[layer_name]))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {"bin", "bin/probe", "etc", "etc/motd"}
        assert all(m.uid == 0 and m.gid == 0 and m.mtime == 0 for m in members.values())
        assert members["bin/probe"].mode & 0o777 == 0o755
        assert tar.extractfile("etc/motd").read() == b"hello\n"  # type: ignore[union-attr]


def test_the_same_directory_gives_the_same_image(tmp_path: Path) -> None:
    rootfs = _rootfs(tmp_path)
    config = oci.ImageConfig("registry.k8s.io/pause:3.10.2", entrypoint=["/pause"])

    first = oci.write_image(rootfs, config, tmp_path / "a.tar")
    second = oci.write_image(rootfs, config, tmp_path / "b.tar")

    assert first == second
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_an_archives_image_names_are_read_from_its_index_and_junk_has_none(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "probe.oci.tar"
    oci.write_image(_rootfs(tmp_path), oci.ImageConfig("featurekube.dev/probe:1"), archive)
    (tmp_path / "junk.oci.tar").write_bytes(b"not a tar")
    with tarfile.open(tmp_path / "no-index.oci.tar", "w") as tar:
        tar.addfile(tarfile.TarInfo("oci-layout"), io.BytesIO())

    assert oci.image_names(archive) == ["featurekube.dev/probe:1"]
    assert oci.image_names(tmp_path / "junk.oci.tar") == []
    assert oci.image_names(tmp_path / "no-index.oci.tar") == []
    assert oci.image_names(tmp_path / "missing.oci.tar") == []
