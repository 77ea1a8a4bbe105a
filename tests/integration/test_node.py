"""The local platform's real node: pods run, reach the API as in-cluster clients, the
kubelet is a node and not an admin, and the machine is left as it was.

The module starts one platform with a node through ``featurekube dev up --node`` (a
machine holds one node at a time, so while another run's node is up this module waits
for it) and its last test takes it down again and looks for anything left behind.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from featurekube import errors
from featurekube._platform import node, node_config, oci, processes, spark_operator
from featurekube._platform import platform as local
from featurekube.cli import main as cli

# The first test waits for the module's node: under load its start, with the Spark
# Operator's 1.3 GB image imported, took up to 3 minutes (DEV_UP_SECONDS bounds it).
pytestmark = pytest.mark.timeout(1200)
DEV_UP_SECONDS = 900

MACHINE_SYSCTLS = (
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
    "net/ipv4/ip_forward",
)
FREE_NODE_WAIT_SECONDS = 300
REPO = Path(__file__).resolve().parents[2]
PYTHON_IMAGE = "featurekube.dev/debian-python:bookworm"


def _machine_state() -> dict[str, object]:
    """What the node must never change on the machine (seen from the test's namespaces)."""
    nft = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, check=True)
    return {
        "sysctls": {s: Path(f"/proc/sys/{s}").read_text() for s in MACHINE_SYSCTLS},
        "nftables": nft.stdout,
        "mounts": sorted(
            line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
        ),
        "links": sorted(p.name for p in Path("/sys/class/net").iterdir()),
    }


def _featurekube(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "featurekube.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def machine_before() -> dict[str, object]:
    processes.wait_until(
        lambda: not (Path("/sys/class/net") / node_config.HOST_LINK).exists(),
        FREE_NODE_WAIT_SECONDS,
        interval=2,
    )
    return _machine_state()


@pytest.fixture(scope="module")
def dev_up(
    machine_before: dict[str, object], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.CompletedProcess[str]]:
    """`featurekube dev up --node` of the module's node: what it said."""
    state_dir = tmp_path_factory.mktemp("node-platform")
    started = time.monotonic()
    up = _featurekube("dev", "up", "--node", "--state-dir", str(state_dir), timeout=DEV_UP_SECONDS)
    print(f"dev up --node: {time.monotonic() - started:.1f} s")
    assert up.returncode == 0, up.stderr[-4000:]
    try:
        yield up
    finally:
        _featurekube("dev", "down", "--force", "--state-dir", str(state_dir), timeout=120)


@pytest.fixture(scope="module")
def node_state_dir(dev_up: subprocess.CompletedProcess[str]) -> Path:
    return Path(dev_up.args[dev_up.args.index("--state-dir") + 1])


@pytest.fixture(scope="module")
def endpoints(node_state_dir: Path) -> local.Endpoints:
    found = local.LocalPlatform(local.PlatformSettings(state_dir=node_state_dir)).endpoints()
    assert found is not None
    assert found.node == node_config.NODE_NAME
    return found


@pytest.fixture(scope="module")
def core(endpoints: local.Endpoints) -> Iterator[object]:
    import kubernetes.client
    import kubernetes.config

    api = kubernetes.config.new_client_from_config(config_file=str(endpoints.kubeconfig))
    with api:
        yield kubernetes.client.CoreV1Api(api)


def _probe_pod(name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [
                {
                    "name": "probe",
                    "image": node_config.Images().probe,
                    "imagePullPolicy": "Never",
                    "readinessProbe": {
                        "httpGet": {"path": "/healthz", "port": 8080},
                        "periodSeconds": 1,
                    },
                    "securityContext": {
                        "runAsNonRoot": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def _ready(pod: object) -> bool:
    conditions = getattr(getattr(pod, "status", None), "conditions", None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def test_a_node_part_that_fails_to_start_is_named_with_its_log_and_nothing_is_left(
    machine_before: dict[str, object], tmp_path: Path
) -> None:
    # Runs before the module's node starts: a machine holds one node at a time.
    real_bin = node.resolve_node_bin_dir(REPO)
    fake_bin = tmp_path / "node-bin"
    shutil.copytree(real_bin, fake_bin, symlinks=True, ignore=shutil.ignore_patterns("images"))
    (fake_bin / "containerd").write_text(
        "#!/bin/sh\necho 'containerd: failed to mount the overlay: permission denied' >&2\nexit 1\n"
    )
    settings = local.PlatformSettings(
        state_dir=tmp_path / "state", node=True, runtime=False, start_timeout=60
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FEATUREKUBE_NODE_BIN", str(fake_bin))
        with pytest.raises(errors.ComponentStartError) as failed:
            local.LocalPlatform(settings).start()

    assert failed.value.component == "containerd"
    assert "it exited" in str(failed.value)
    assert "failed to mount the overlay" in str(failed.value)
    assert local.LocalPlatform(settings).endpoints() is None
    assert _machine_state() == machine_before
    assert list(Path("/sys/fs/cgroup").glob("*/kubepods")) == []


def test_dev_up_node_refuses_a_running_platform_that_has_no_node(
    platform: local.Endpoints, capsys: pytest.CaptureFixture[str]
) -> None:
    state_dir = str(platform.kubeconfig.parent)

    assert cli.main(["dev", "up", "--node", "--state-dir", state_dir]) != 0

    error = capsys.readouterr().err
    assert f"the local platform in {state_dir} is running without a node" in error
    assert "--node" in error
    assert all(processes.is_running(pid) for pid in platform.pids.values())


def test_a_pod_resolves_the_api_server_by_dns_and_calls_it_with_its_service_account(
    core: object,
) -> None:
    import kubernetes.client

    api: kubernetes.client.CoreV1Api = core  # type: ignore[assignment]
    namespace = f"node-{uuid.uuid4().hex[:8]}"
    api.create_namespace({"metadata": {"name": namespace}})
    try:
        # The ServiceAccount controller makes each namespace's `default` account.
        assert processes.wait_until(
            lambda: api.read_namespaced_service_account("default", namespace) is not None, 60
        )
        started = time.monotonic()
        api.create_namespaced_pod(namespace, _probe_pod("probe"))
        ready = processes.wait_until(
            lambda: _ready(api.read_namespaced_pod("probe", namespace)), 120, interval=0.5
        )
        pod = api.read_namespaced_pod("probe", namespace)
        assert ready, f"the probe pod did not become Ready: {pod.status}"
        print(f"probe pod Ready {time.monotonic() - started:.1f} s after create")
        # The probe passes its readiness check only once every check passed; its log
        # (fetched through the API server from the kubelet) says what it found.
        log = api.read_namespaced_pod_log("probe", namespace)
        found = json.loads(log.strip().splitlines()[-1])
    finally:
        api.delete_namespace(namespace)

    assert found["serviceHost"] == node_config.KUBERNETES_SERVICE_IP
    assert found["resolved"] == node_config.KUBERNETES_SERVICE_IP
    assert found["username"] == f"system:serviceaccount:{namespace}:default"
    assert "error" not in found
    assert pod.spec.node_name == node_config.NODE_NAME


def test_a_pod_from_the_debian_base_runs_python_as_a_non_root_user(
    node_state_dir: Path, core: object
) -> None:
    import kubernetes.client

    api: kubernetes.client.CoreV1Api = core  # type: ignore[assignment]
    built = subprocess.run(
        [str(REPO / "hack" / "images" / "debian-base.sh")],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
        timeout=480,
    )
    rootfs = Path(built.stdout.strip().splitlines()[-1])
    image = oci.ImageConfig(PYTHON_IMAGE, entrypoint=["python3"], user="65532:65532")
    archive = rootfs.parent / "python.oci.tar"
    if not archive.is_file():
        oci.write_image(rootfs, image, archive)
    local.LocalPlatform(local.PlatformSettings(state_dir=node_state_dir)).load_images([archive])
    namespace = f"node-{uuid.uuid4().hex[:8]}"
    api.create_namespace({"metadata": {"name": namespace}})
    try:
        assert processes.wait_until(
            lambda: api.read_namespaced_service_account("default", namespace) is not None, 60
        )
        api.create_namespaced_pod(
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "python"},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "python",
                            "image": PYTHON_IMAGE,
                            "imagePullPolicy": "Never",
                            "args": [
                                "-c",
                                "import os, sys; print(os.getuid(), *sys.version_info[:2])",
                            ],
                            "securityContext": {"runAsNonRoot": True},
                        }
                    ],
                },
            },
        )
        done = processes.wait_until(
            lambda: (
                api.read_namespaced_pod("python", namespace).status.phase in ("Succeeded", "Failed")
            ),
            120,
            interval=0.5,
        )
        pod = api.read_namespaced_pod("python", namespace)
        assert done, f"the python pod did not finish: {pod.status}"
        log = api.read_namespaced_pod_log("python", namespace)
    finally:
        api.delete_namespace(namespace)

    assert pod.status.phase == "Succeeded", log
    assert log.split() == ["65532", "3", "11"]


def _run_to_completion(api: object, namespace: str, name: str, pod: dict[str, object]) -> str:
    """Create ``pod``, wait for it to finish, and return its log; fail unless it succeeded."""
    import kubernetes.client

    core: kubernetes.client.CoreV1Api = api  # type: ignore[assignment]
    core.create_namespaced_pod(namespace, pod)
    done = processes.wait_until(
        lambda: core.read_namespaced_pod(name, namespace).status.phase in ("Succeeded", "Failed"),
        240,
        interval=0.5,
    )
    status = core.read_namespaced_pod(name, namespace).status
    assert done, f"pod {name} did not finish: {status}"
    log: str = core.read_namespaced_pod_log(name, namespace)
    assert status.phase == "Succeeded", f"pod {name}: {log[-2000:]}"
    return log


# `make test` builds the images first (its images target); here a build that is not
# cached (a source changed since) takes up to 15 minutes on a loaded machine, loading
# the Spark image's 1.3 GB a few minutes more, and each pod gets 4.
@pytest.mark.timeout(2400)
def test_featurekubes_own_images_run_their_entry_points_as_non_root_on_a_read_only_root(
    node_state_dir: Path, core: object
) -> None:
    import kubernetes.client

    built = subprocess.run(
        [sys.executable, str(REPO / "hack" / "images" / "build.py")],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
        timeout=900,
    )
    archives = [Path(line) for line in built.stdout.split()]
    started = time.monotonic()
    local.LocalPlatform(local.PlatformSettings(state_dir=node_state_dir)).load_images(archives)
    print(f"loaded {len(archives)} images in {time.monotonic() - started:.1f} s")
    api: kubernetes.client.CoreV1Api = core  # type: ignore[assignment]
    namespace = f"images-{uuid.uuid4().hex[:8]}"
    api.create_namespace({"metadata": {"name": namespace}})

    def pod(name: str, image: str, args: list[str]) -> dict[str, object]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "containers": [
                    {
                        "name": name,
                        "image": f"ghcr.io/featurekube/{image}:0.1.0",
                        "imagePullPolicy": "Never",
                        "args": args,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "readOnlyRootFilesystem": True,
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                    }
                ],
                "volumes": [{"name": "tmp", "emptyDir": {}}],
            },
        }

    try:
        assert processes.wait_until(
            lambda: api.read_namespaced_service_account("default", namespace) is not None, 60
        )
        operator_help = _run_to_completion(
            api, namespace, "operator", pod("operator", "operator", ["--help"])
        )
        server_help = _run_to_completion(
            api, namespace, "server", pod("server", "feature-server", ["--help"])
        )
        # Anything but `driver` or `executor` passes through the Spark entry point:
        # the python engine's Jobs run so.
        spark_check = (
            "id -u; spark-submit --version 2>&1 | grep -o 'version [0-9.]*' | head -1; "
            "ls $SPARK_HOME/jars | grep -c -e delta-spark -e hadoop-aws; "
            "python -c 'import featurekube.materialize.python_job, pyspark; print(\"jobs\")'"
        )
        spark_out = _run_to_completion(
            api, namespace, "spark", pod("spark", "spark", ["bash", "-c", spark_check])
        )
    finally:
        api.delete_namespace(namespace)

    assert "featurekube-operator" in operator_help
    assert "--plan" in server_help
    assert spark_out.split() == ["65532", "version", "4.2.0", "2", "jobs"]


def test_the_kubernetes_service_points_at_the_api_servers_advertised_address(
    core: object, endpoints: local.Endpoints
) -> None:
    import kubernetes.client

    api: kubernetes.client.CoreV1Api = core  # type: ignore[assignment]
    service = api.read_namespaced_service("kubernetes", "default")
    found = api.read_namespaced_endpoints("kubernetes", "default")

    assert service.spec.cluster_ip == node_config.KUBERNETES_SERVICE_IP
    assert [a.ip for s in found.subsets for a in s.addresses] == [node_config.HOST_IP]
    assert endpoints.apiserver_url.startswith(f"https://{node_config.HOST_IP}:")


def test_the_kubelet_is_a_node_and_may_not_list_the_clusters_secrets(
    node_state_dir: Path,
) -> None:
    import kubernetes.client
    import kubernetes.config

    kubeconfig = node_config.NodeLayout(node_state_dir / "node").kubeconfig("kubelet")
    api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    with api:
        review = kubernetes.client.AuthenticationV1Api(api).create_self_subject_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        )
        access = kubernetes.client.AuthorizationV1Api(api).create_self_subject_access_review(
            {"spec": {"resourceAttributes": {"verb": "list", "resource": "secrets"}}}
        )

    assert review.status.user_info.username == f"system:node:{node_config.NODE_NAME}"
    assert "system:nodes" in review.status.user_info.groups
    assert "system:masters" not in review.status.user_info.groups
    assert access.status.allowed is False


def test_dev_up_installs_the_spark_operator_whose_webhook_judges_spark_applications(
    dev_up: subprocess.CompletedProcess[str], endpoints: local.Endpoints, core: object
) -> None:
    import kubernetes.client

    api: kubernetes.client.CoreV1Api = core  # type: ignore[assignment]
    apps = kubernetes.client.AppsV1Api(api.api_client)
    custom = kubernetes.client.CustomObjectsApi(api.api_client)

    assert endpoints.spark_operator == spark_operator.VERSION, spark_operator.NOT_BUILT
    assert f"# Spark Operator: {spark_operator.VERSION} in namespace" in dev_up.stderr
    for name in (spark_operator.WEBHOOK, spark_operator.CONTROLLER):
        deployment = apps.read_namespaced_deployment(name, spark_operator.NAMESPACE)
        assert deployment.status.ready_replicas == 1, deployment.status
        [pod] = api.list_namespaced_pod(
            spark_operator.NAMESPACE,
            label_selector=f"app.kubernetes.io/component={name.rsplit('-', 1)[1]}",
        ).items
        assert pod.spec.node_name == node_config.NODE_NAME
        assert pod.spec.containers[0].image == spark_operator.IMAGE
    # The webhook answers (a dry run goes through it too): the operator refuses a
    # SparkApplication whose name does not start with a letter.
    with pytest.raises(kubernetes.client.ApiException) as refused:
        custom.create_namespaced_custom_object(
            "sparkoperator.k8s.io",
            "v1beta2",
            "default",
            "sparkapplications",
            {
                "apiVersion": "sparkoperator.k8s.io/v1beta2",
                "kind": "SparkApplication",
                "metadata": {"name": "1-starts-with-a-digit"},
                "spec": {
                    "type": "Python",
                    "mode": "cluster",
                    "sparkVersion": "4.0.0",
                    "mainApplicationFile": "local:///job.py",
                    "driver": {},
                    "executor": {},
                },
            },
            dry_run="All",
        )
    assert refused.value.status == 403
    assert json.loads(refused.value.body)["message"].startswith(
        'admission webhook "validate-sparkoperator-k8s-io-v1beta2-sparkapplication'
        '.sparkoperator.k8s.io" denied the request: invalid SparkApplication name'
    )


def test_a_second_platform_with_a_node_is_refused_naming_the_first(
    node_state_dir: Path, tmp_path: Path
) -> None:
    second = local.LocalPlatform(
        local.PlatformSettings(state_dir=tmp_path / "second", node=True, runtime=False)
    )

    with pytest.raises(errors.PlatformError) as refused:
        second.start()

    assert str(node_state_dir) in str(refused.value)
    assert "one node at a time" in str(refused.value)
    assert second.endpoints() is None


def test_the_machine_is_untouched_while_the_node_runs(
    endpoints: local.Endpoints, machine_before: dict[str, object]
) -> None:
    now = _machine_state()

    assert now["sysctls"] == machine_before["sysctls"]
    assert now["nftables"] == machine_before["nftables"]
    assert now["mounts"] == machine_before["mounts"]
    # The one change: the machine's end of the node's link, gone again after `down`.
    assert set(now["links"]) - set(machine_before["links"]) == {node_config.HOST_LINK}  # type: ignore[call-overload]


def test_nothing_in_the_node_has_a_route_off_the_machine(endpoints: local.Endpoints) -> None:
    holder = endpoints.pids["node-namespace"]

    def route(address: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["nsenter", f"--target={holder}", "--net", "--", "ip", "route", "get", address],
            capture_output=True,
            text=True,
        )

    # The machine's own address and the internet: no route at all.
    for address in ("192.0.2.1", "1.1.1.1"):
        assert route(address).returncode != 0, route(address).stdout
    # A Service IP kube-proxy has not programmed: refused inside the node.
    assert route("10.0.0.200").returncode != 0
    # The API server on the machine's end of the link is reachable.
    assert f"dev {node_config.NODE_LINK}" in route(node_config.HOST_IP).stdout


def test_dev_down_leaves_no_process_link_table_mount_or_cgroup_of_the_node(
    node_state_dir: Path, endpoints: local.Endpoints, machine_before: dict[str, object]
) -> None:
    node_pids = [endpoints.pids[name] for name in ("containerd", "kubelet", "kube-proxy")]
    holder = endpoints.pids["node-namespace"]
    node_net = Path(f"/proc/{holder}/ns/net").readlink()

    down = _featurekube("dev", "down", "--state-dir", str(node_state_dir), timeout=120)

    assert down.returncode == 0, down.stderr
    assert not any(processes.is_running(pid) for pid in endpoints.pids.values())
    assert not any(processes.is_running(pid) for pid in node_pids)
    left_in_namespace = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "ns" / "net").readlink() == node_net:
                    left_in_namespace.append(entry.name)
            except OSError:
                continue
    assert left_in_namespace == []
    assert list(Path("/sys/fs/cgroup").glob("*/kubepods")) == []
    assert _machine_state() == machine_before
