"""Run a Python program as a container of a local runtime pod, its ServiceAccount mounted
where in-cluster clients look for it; does I/O.

In a cluster the kubelet mounts a pod's ServiceAccount token, the API server's CA and
the namespace at ``/var/run/secrets/kubernetes.io/serviceaccount``. A local process
cannot have that path, so the local runtime writes those files to a directory of its
own and starts the container's program through this module, which points the
Kubernetes client's in-cluster configuration at that directory before the program
runs, as the runtime maps other mounts (the platform imports no gRPC, so the online
client's default token path is left as it is: no program the runtime starts uses it):

    python -m featurekube._platform.incluster DIR -m MODULE [ARGS...]
    python -m featurekube._platform.incluster DIR SCRIPT [ARGS...]

It is never deployed anywhere: in a cluster the kubelet does this.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["SERVICE_ACCOUNT_DIR", "main", "point_at"]

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
"""Where Kubernetes mounts a pod's ServiceAccount."""


def point_at(directory: Path) -> None:
    """Make in-cluster clients of this process read ``directory`` as the pod's
    ServiceAccount mount."""
    from kubernetes.config import incluster_config

    incluster_config.SERVICE_TOKEN_FILENAME = str(directory / "token")
    incluster_config.SERVICE_CERT_FILENAME = str(directory / "ca.crt")


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or (args[1] == "-m" and len(args) < 3):
        raise SystemExit(
            "usage: python -m featurekube._platform.incluster DIR -m MODULE|SCRIPT ..."
        )
    point_at(Path(args[0]))
    if args[1] == "-m":
        sys.argv = [args[2], *args[3:]]
        runpy.run_module(args[2], run_name="__main__", alter_sys=True)
    else:
        sys.argv = args[1:]
        runpy.run_path(args[1], run_name="__main__")


if __name__ == "__main__":
    main()
