"""The local platform's node: its namespaces, files, images and clean-up; does I/O.

Starting the node's processes is :mod:`.platform`'s job (they are components like the
others); this module makes the place they run in and, on stop, removes everything the
node made: its containers (by their cgroups), the processes left in its namespaces, the
namespaces themselves (with them go the bridge, the pods' network namespaces,
kube-proxy's nftables tables and the mounts), the veth pair and the cgroups.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import yaml

from featurekube import errors
from featurekube._platform import components, node_config, oci, processes

__all__ = [
    "NODE_BINARIES",
    "build_images",
    "check_free",
    "cleanup",
    "create_namespace",
    "import_images",
    "prepare",
    "resolve_node_bin_dir",
]

NODE_BINARIES = (
    "containerd",
    "ctr",
    "containerd-shim-runc-v2",
    "coredns",
    "pause",
    "probe",
    "cni/bridge",
    "cni/host-local",
    "cni/loopback",
    "cni/portmap",
)
CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBELET_CGROUP = "kubepods"


def _run(argv: list[str], what: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise errors.ComponentStartError(
            "node", f"{what}: `{' '.join(argv)}` exited with {done.returncode}", done.stderr
        )
    return done.stdout


def resolve_node_bin_dir(repo_root: Path | None) -> Path:
    """The directory holding the node's binaries (``hack/node/build.sh``), building them
    if need be; ``$FEATUREKUBE_NODE_BIN`` names one instead."""
    if os.environ.get("FEATUREKUBE_NODE_BIN"):
        bin_dir = Path(os.environ["FEATUREKUBE_NODE_BIN"])
    elif repo_root is None:
        raise errors.PlatformError(
            "cannot find the node's binaries: set FEATUREKUBE_NODE_BIN to a directory holding "
            + ", ".join(NODE_BINARIES)
            + ", or run from a featurekube checkout (hack/node/build.sh builds them)"
        )
    else:
        built = subprocess.run(
            [str(repo_root / "hack" / "node" / "build.sh")], stdout=subprocess.PIPE, text=True
        )
        if built.returncode != 0:
            raise errors.PlatformError(
                f"hack/node/build.sh failed with exit status {built.returncode}; "
                "its output above says why"
            )
        bin_dir = Path(built.stdout.strip().splitlines()[-1])
    missing = [b for b in NODE_BINARIES if not (bin_dir / b).is_file()]
    if missing:
        raise errors.PlatformError(
            f"{bin_dir} lacks {', '.join(missing)}: run `make node-bin` to build them"
        )
    return bin_dir


def _link_owner() -> str | None:
    """The state directory of the platform whose node holds :data:`HOST_LINK`, '' if
    unknown, None when the link is free."""
    link = Path("/sys/class/net") / node_config.HOST_LINK
    if not link.exists():
        return None
    with contextlib.suppress(OSError):
        return (link / "ifalias").read_text().strip()
    return ""


def check_free(state_dir: Path) -> None:
    """Refuse to start a second node on this machine: one node per machine, since the
    kubelet's cgroups and the node's addresses are machine-wide."""
    owner = _link_owner()
    if owner is None:
        return
    where = f"the local platform in {owner}" if owner else "another local platform"
    raise errors.PlatformError(
        f"cannot start a node for the local platform in {state_dir}: {where} already runs "
        f"one on this machine (network link {node_config.HOST_LINK}), and a machine holds "
        f"one node at a time; stop that platform first (featurekube dev down --state-dir "
        f"{owner or 'DIR'}), or start this one without --node"
    )


def prepare(
    layout: node_config.NodeLayout,
    cni_bin_dir: Path,
    images: node_config.Images,
    pki: Path,
) -> None:
    """Write the node's files into its fresh directory: configs, overlay directories,
    fake sysctl files."""
    for directory in (layout.root, layout.cni_conf_dir, layout.tmp, layout.manifests):
        directory.mkdir(parents=True, exist_ok=True)
    for target in node_config.OVERLAID_DIRS:
        for directory in layout.overlay_dirs(target):
            directory.mkdir(parents=True)
    layout.tunables.mkdir()
    for tunable in node_config.KERNEL_TUNABLES:
        # Start from the machine's value, so the kubelet sees what it would have seen.
        layout.tunable_file(tunable).write_text(Path(f"/proc/sys/{tunable}").read_text())
    layout.resolv_conf.write_text("")
    layout.containerd_config.write_text(node_config.containerd_config(layout, cni_bin_dir, images))
    (layout.cni_conf_dir / "10-featurekube.conflist").write_text(
        json.dumps(node_config.cni_config(), indent=2)
    )
    layout.kubelet_config.write_text(
        yaml.safe_dump(node_config.kubelet_config(layout, pki), sort_keys=False)
    )
    layout.kube_proxy_config.write_text(
        yaml.safe_dump(node_config.kube_proxy_config(layout), sort_keys=False)
    )


def build_images(node_bin_dir: Path, images: node_config.Images) -> list[Path]:
    """The node's image archives (pause, CoreDNS, the probe), written once beside the
    binaries they hold and reused afterwards."""
    out_dir = node_bin_dir / "images"
    specs = [
        ("pause", oci.ImageConfig(images.pause, entrypoint=["/pause"], user="65535:65535")),
        ("coredns", oci.ImageConfig(images.coredns, entrypoint=["/coredns"])),
        ("probe", oci.ImageConfig(images.probe, entrypoint=["/probe"], user="65532:65532")),
    ]
    archives = []
    for binary, config in specs:
        archive = out_dir / f"{binary}.oci.tar"
        if not archive.is_file():
            with tempfile.TemporaryDirectory() as rootfs:
                shutil.copy2(node_bin_dir / binary, Path(rootfs) / binary)
                oci.write_image(Path(rootfs), config, archive)
        archives.append(archive)
    return archives


def create_namespace(layout: node_config.NodeLayout, state_dir: Path, log: Path) -> int:
    """Start the holder of the node's mount and network namespaces, join them to the
    machine by the veth pair, and make them what the node needs; return its pid."""
    holder = processes.spawn(
        ["unshare", "--mount", "--net", "--propagation", "private", "--", "sleep", "infinity"],
        log,
    )
    own = Path("/proc/self/ns/net").readlink()

    def unshared() -> bool:
        return Path(f"/proc/{holder}/ns/net").readlink() != own

    if not processes.wait_until(unshared, 10.0, interval=0.05):
        processes.stop(holder)
        raise errors.ComponentStartError("node namespace", "it did not start", processes.tail(log))
    try:
        _run(
            [
                "ip", "link", "add", node_config.HOST_LINK, "type", "veth",
                "peer", "name", node_config.NODE_LINK, "netns", str(holder),
            ],
            "making the node's link",
        )  # fmt: skip
        host = [
            ["ip", "link", "set", node_config.HOST_LINK, "alias", str(state_dir)],
            ["ip", "addr", "add", f"{node_config.HOST_IP}/{node_config.LINK_PREFIX}", "dev",
             node_config.HOST_LINK],
            ["ip", "link", "set", node_config.HOST_LINK, "up"],
            # Replies to pods go back to the node, not along the machine's default route.
            ["ip", "route", "add", node_config.POD_CIDR, "via", node_config.NODE_IP, "dev",
             node_config.HOST_LINK],
        ]  # fmt: skip
        for argv in host:
            _run(argv, "setting up the machine's end of the node's link")
        for argv in node_config.namespace_commands(layout):
            _run(components.in_node(holder, argv), "setting up the node's namespaces")
    except BaseException:
        processes.stop(holder)
        _delete_link(state_dir)
        raise
    return holder


def import_images(holder: int, ctr: Path, socket: str, archives: list[Path]) -> None:
    """Load the image archives into containerd's ``k8s.io`` namespace (the CRI's)."""
    for archive in archives:
        _run(
            components.in_node(
                holder,
                [
                    str(ctr),
                    f"--address={socket}",
                    "--namespace=k8s.io",
                    "images",
                    "import",
                    str(archive),
                ],
            ),
            f"importing {archive.name}",
        )


def _cgroup_dirs() -> list[Path]:
    """The kubelet's cgroup in each v1 hierarchy (or the v2 one) where it exists."""
    found = []
    with contextlib.suppress(OSError):
        for hierarchy in sorted(CGROUP_ROOT.iterdir()):
            candidate = hierarchy / KUBELET_CGROUP
            if candidate.is_dir():
                found.append(candidate)
    if (CGROUP_ROOT / KUBELET_CGROUP / "cgroup.procs").exists():
        found.append(CGROUP_ROOT / KUBELET_CGROUP)
    return found


def _cgroup_pids() -> set[int]:
    pids: set[int] = set()
    for top in _cgroup_dirs():
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(line) for line in procs.read_text().split())
    return pids


def _namespace_pids(holder: int) -> set[int]:
    """Processes in the holder's network namespace, but for the holder itself."""
    try:
        target = Path(f"/proc/{holder}/ns/net").readlink()
    except OSError:
        return set()
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != holder:
            with contextlib.suppress(OSError):
                if (entry / "ns" / "net").readlink() == target:
                    found.add(int(entry.name))
    return found


def _kill(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    processes.wait_until(lambda: not any(processes.is_running(p) for p in pids), 10.0)


def _remove_cgroups() -> list[Path]:
    """Remove the kubelet's cgroups, deepest first; return those that would not go."""
    left = []
    for top in _cgroup_dirs():
        for directory in sorted((d for d in top.rglob("*") if d.is_dir()), reverse=True):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()
        if top.exists():
            left.append(top)
    return left


def _delete_link(state_dir: Path) -> None:
    if _link_owner() == str(state_dir):
        subprocess.run(["ip", "link", "del", node_config.HOST_LINK], capture_output=True)


def cleanup(holder: int | None, state_dir: Path) -> None:
    """Remove what the node made, once its kubelet, kube-proxy and containerd stopped:
    the pods' processes, what is left in its namespaces, the namespaces, the veth pair
    and the kubelet's cgroups."""
    _kill(_cgroup_pids())
    if holder is not None and processes.is_running(holder, "sleep"):
        _kill(_namespace_pids(holder))
        processes.stop(holder, "sleep")
    _delete_link(state_dir)
    # A container's last process may take a moment to leave its cgroup.
    processes.wait_until(lambda: not _remove_cgroups(), 10.0)
