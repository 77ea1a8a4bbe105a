"""The local runtime: stands in for the Kubeflow Spark Operator and the kubelet, on the
local platform only; does I/O.

- Each new SparkApplication runs with ``spark-submit`` in local mode, one at a time (a
  laptop has few cores), with the ConfigMaps its driver mounts written to a directory
  and its file paths mapped from the job image to this checkout. Its status goes
  through SUBMITTED, RUNNING, and COMPLETED or FAILED with the error, the way the Spark
  Operator writes it, and its driver pod is left terminated with the job's report as
  its termination message, the way the kubelet leaves it.
- Each pod of featurekube's Jobs (label ``featurekube.dev/feature-view``; the python
  engine) runs as a local process of this Python, in the same queue, its ConfigMap
  volumes written to a directory and the paths in its arguments mapped to them. The
  pod goes Running, then is left terminated with the job's report as its termination
  message (its last log lines when it failed without one), as the kubelet leaves it.
  The platform's own job controller created that pod and, seeing it end, writes the
  Job's status: the runtime plays only the kubelet.
- Each feature-server Deployment (label ``featurekube.dev/feature-service``) runs as one
  local process on a free loopback port, with its plan ConfigMap written to a file; its
  pods are marked Running and Ready once the port answers, as a kubelet would, and the
  process is replaced when the pod template changes and stopped when the Deployment
  goes. Where each service listens is written to ``<state dir>/runtime/endpoints.json``.
- Every process gets this process's environment with its container's ``env`` on top,
  resolved as the kubelet does (values, keys of the namespace's Secrets and
  ConfigMaps): the credentials the operator gives a pod are the ones it uses. Its
  ConfigMap and Secret volumes are written to a directory (a Secret's ``items`` to
  their paths) and the paths in its arguments mapped to them.
- A feature server gets its ServiceAccount as a kubelet projects it (unless its pod
  says ``automountServiceAccountToken: false``): a token from the TokenRequest API for
  the pod's ``serviceAccountName`` (the API server's default audience, valid for
  ``TOKEN_SECONDS`` and requested anew once 80% of that has passed, as the kubelet
  does), the API server's CA and the namespace, in a directory that
  :mod:`featurekube._platform.incluster` stands in for
  ``/var/run/secrets/kubernetes.io/serviceaccount``, with ``KUBERNETES_SERVICE_HOST``
  and ``KUBERNETES_SERVICE_PORT`` naming the API server: its in-cluster clients act as
  that ServiceAccount, and the runtime's own kubeconfig never reaches it. The
  local API server runs without the ServiceAccount admission plugin, so a pod of a
  ServiceAccount that does not exist is admitted; the runtime runs it without
  credentials (and says so) where a kubelet would wait: a server that needs the API
  (``--auth tokenreview``) then fails to start, naming why, in its log.

It is never deployed anywhere: in a cluster the Spark Operator and the kubelet do this.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
from kubernetes.client.exceptions import ApiException

from featurekube import spark_session
from featurekube._platform import incluster, processes
from featurekube.materialize import report

__all__ = ["PathMapping", "Runtime", "main", "record_driver_pod", "record_job_pod"]

SPARK = ("sparkoperator.k8s.io", "v1beta2", "sparkapplications")
VIEW_LABEL = "featurekube.dev/feature-view"
JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"
TERMINATION_MESSAGE_LIMIT = 4096
"""Bytes of a termination message the kubelet keeps."""
SERVICE_LABEL = "featurekube.dev/feature-service"
DRIVER_CONTAINER = "spark-kubernetes-driver"
REPO = Path(__file__).resolve().parents[3]
TOKEN_SECONDS = 3600
"""How long a projected ServiceAccount token is valid (the kubelet's default)."""


@dataclass(frozen=True)
class PathMapping:
    """Where a file of the job image lives in this checkout."""

    image_prefix: str
    local_dir: Path

    def apply(self, path: str) -> str:
        if path.startswith(self.image_prefix):
            return str(self.local_dir / path.removeprefix(self.image_prefix))
        return path


DEFAULT_FILES = {
    "local:///opt/featurekube/materialize.py": REPO
    / "sdk"
    / "featurekube"
    / "materialize"
    / "job.py",
}


def _mounted(path: str, mounts: Mapping[str, str]) -> str | None:
    """``path`` under one of the mount paths in ``mounts``, as the local directory
    standing in for that mount holds it; None when it is under none."""
    for prefix, directory in mounts.items():
        if path.startswith(prefix + "/"):
            return directory + path.removeprefix(prefix)
    return None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass
class _Token:
    """A pod's projected ServiceAccount token, and when to request it anew."""

    namespace: str
    service_account: str
    directory: Path
    refresh_at: float


@dataclass
class _Server:
    pid: int
    port: int
    template_hash: str
    token: _Token | None = None


@dataclass
class Runtime:
    """The runtime's state; :meth:`step` does one round of work."""

    api: kubernetes.client.ApiClient
    work_dir: Path
    files: Mapping[str, Path] = field(default_factory=lambda: dict(DEFAULT_FILES))
    server_command: Sequence[str] = (sys.executable, "-m", "featurekube_server")
    namespaces: frozenset[str] | None = None
    """Act only in these namespaces (None: all), so tests sharing a cluster stay apart."""
    _servers: dict[tuple[str, str], _Server] = field(default_factory=dict)
    _job: threading.Thread | None = None

    def _mine(self, namespace: str) -> bool:
        return self.namespaces is None or namespace in self.namespaces

    # -- SparkApplications ---------------------------------------------------------------

    def _custom(self) -> kubernetes.client.CustomObjectsApi:
        return kubernetes.client.CustomObjectsApi(self.api)

    def _set_spark_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self._custom().patch_namespaced_custom_object_status(
            *SPARK[:2], namespace, SPARK[2], name, {"status": dict(status)}
        )

    def _mount_config_maps(
        self, namespace: str, mounts: Sequence[Mapping[str, str]], into: Path
    ) -> dict[str, str]:
        """Write each mounted ConfigMap's keys as files; return mount path -> local dir."""
        core = kubernetes.client.CoreV1Api(self.api)
        mapped = {}
        for mount in mounts:
            data = core.read_namespaced_config_map(mount["name"], namespace).data or {}
            local = into / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            for key, value in data.items():
                (local / key).write_text(value)
            mapped[mount["path"].rstrip("/")] = str(local)
        return mapped

    def _mount_secret(
        self, namespace: str, source: Mapping[str, Any], mount_path: str, into: Path
    ) -> dict[str, str]:
        """Write a mounted Secret's keys (or its ``items``, to their paths) as files;
        return mount path -> local dir. A missing Secret that is not optional fails the
        pod, as it keeps a kubelet's pod from starting."""
        name = source["secretName"]
        core = kubernetes.client.CoreV1Api(self.api)
        try:
            data = core.read_namespaced_secret(name, namespace).data or {}
        except ApiException as exc:
            if exc.status != 404 or not source.get("optional"):
                raise
            data = {}
        items = source.get("items") or [{"key": key, "path": key} for key in data]
        local = into / f"secret-{name}"
        for item in items:
            if item["key"] not in data:
                if source.get("optional"):
                    continue
                raise KeyError(f"Secret {namespace}/{name} has no key {item['key']}")
            path = local / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(base64.b64decode(data[item["key"]]))
            path.chmod(0o600)
        local.mkdir(parents=True, exist_ok=True)
        return {mount_path.rstrip("/"): str(local)}

    def _mount_volumes(
        self, namespace: str, pod: Mapping[str, Any], container: Mapping[str, Any], into: Path
    ) -> dict[str, str]:
        """The container's ConfigMap and Secret volumes, written; mount path -> local dir."""
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        mounts: dict[str, str] = {}
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"]) or {}
            if volume.get("configMap"):
                mounts.update(
                    self._mount_config_maps(
                        namespace,
                        [{"name": volume["configMap"]["name"], "path": mount["mountPath"]}],
                        into,
                    )
                )
            elif volume.get("secret"):
                mounts.update(
                    self._mount_secret(namespace, volume["secret"], mount["mountPath"], into)
                )
        return mounts

    def _project_service_account(
        self, namespace: str, pod: Mapping[str, Any], into: Path
    ) -> _Token | None:
        """The pod's ServiceAccount token, the API server's CA and the namespace, written
        to ``into`` as the kubelet writes them to its ServiceAccount mount; None when the
        pod mounts none or its ServiceAccount does not exist."""
        if pod.get("automountServiceAccountToken") is False:
            return None
        name = pod.get("serviceAccountName") or pod.get("serviceAccount") or "default"
        token = _Token(namespace, name, into, 0.0)
        try:
            self._refresh_token(token)
        except ApiException as exc:
            if exc.status != 404:
                raise
            print(
                f"runtime: {namespace}: ServiceAccount {name} does not exist; its pod runs "
                "without a ServiceAccount token",
                file=sys.stderr,
                flush=True,
            )
            return None
        ca = self.api.configuration.ssl_ca_cert
        if ca:
            (into / "ca.crt").write_bytes(Path(ca).read_bytes())
        (into / "namespace").write_text(namespace)
        return token

    def _refresh_token(self, token: _Token) -> None:
        """Request ``token`` anew (TokenRequest) and replace its file in one step, as
        the kubelet rotates a projected token."""
        core = kubernetes.client.CoreV1Api(self.api)
        issued = time.time()
        # No audiences: the API server's own, which its TokenReview accepts by default.
        spec = kubernetes.client.V1TokenRequestSpec(audiences=[], expiration_seconds=TOKEN_SECONDS)
        answer = core.create_namespaced_service_account_token(
            token.service_account,
            token.namespace,
            kubernetes.client.AuthenticationV1TokenRequest(spec=spec),
        )
        if answer.status is None or not answer.status.token:
            raise RuntimeError(
                f"TokenRequest for ServiceAccount {token.namespace}/{token.service_account} "
                "answered no token"
            )
        token.directory.mkdir(parents=True, exist_ok=True)
        staged = token.directory / ".token"
        staged.write_text(answer.status.token)
        staged.chmod(0o600)
        staged.replace(token.directory / "token")
        token.refresh_at = issued + 0.8 * TOKEN_SECONDS

    def _api_server_environment(self) -> dict[str, str]:
        """``KUBERNETES_SERVICE_HOST`` and ``_PORT``, naming the API server the runtime
        talks to, as a cluster's pods have them."""
        url = urllib.parse.urlsplit(self.api.configuration.host)
        return {
            "KUBERNETES_SERVICE_HOST": url.hostname or "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(url.port or 443),
        }

    def _container_env(self, namespace: str, env: Sequence[Mapping[str, Any]]) -> dict[str, str]:
        """A container's ``env`` as the kubelet resolves it: values, and keys of
        Secrets and ConfigMaps of its namespace (a missing one that is not optional
        fails the pod, as the kubelet's CreateContainerConfigError does)."""
        core = kubernetes.client.CoreV1Api(self.api)
        resolved: dict[str, str] = {}
        for entry in env:
            if "value" in entry:
                resolved[entry["name"]] = str(entry["value"])
                continue
            source = entry.get("valueFrom") or {}
            for kind, read in (
                ("secretKeyRef", core.read_namespaced_secret),
                ("configMapKeyRef", core.read_namespaced_config_map),
            ):
                ref = source.get(kind)
                if not ref:
                    continue
                try:
                    data = read(ref["name"], namespace).data or {}
                except ApiException as exc:
                    if exc.status != 404 or not ref.get("optional"):
                        raise
                    data = {}
                if ref["key"] in data:
                    raw = data[ref["key"]]
                    secret = kind == "secretKeyRef"
                    resolved[entry["name"]] = base64.b64decode(raw).decode() if secret else str(raw)
                elif not ref.get("optional"):
                    raise KeyError(f"{kind} {namespace}/{ref['name']} has no key {ref['key']}")
        return resolved

    def _spark_submit(self, app: Mapping[str, Any]) -> None:
        meta, spec = app["metadata"], app["spec"]
        namespace, name = meta["namespace"], meta["name"]
        run_dir = self.work_dir / "spark" / namespace / name
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        driver = spec.get("driver") or {}
        mounts = self._mount_config_maps(
            namespace, driver.get("configMaps") or [], run_dir / "mounts"
        )

        def local(path: str) -> str:
            return _mounted(path, mounts) or str(self.files.get(path, path)).removeprefix(
                "local://"
            )

        conf = {**spark_session.render_spark_conf(spark_session.SparkSettings(), os.environ)}
        conf.update(spec.get("sparkConf") or {})
        conf["spark.app.name"] = name
        spark_home = _spark_home()
        argv = [str(spark_home / "bin" / "spark-submit"), "--master", "local[2]"]
        for key, value in sorted(conf.items()):
            argv += ["--conf", f"{key}={value}"]
        argv += [
            local(spec["mainApplicationFile"]),
            *(local(a) for a in spec.get("arguments") or []),
        ]
        log = run_dir / "driver.log"
        self._set_spark_status(
            namespace,
            name,
            {
                "applicationState": {"state": "RUNNING"},
                "driverInfo": {"podName": f"{name}-driver"},
                "sparkApplicationId": f"local-{name}",
                "lastSubmissionAttemptTime": _now(),
                "executionAttempts": 1,
                "submissionAttempts": 1,
            },
        )
        termination_log = run_dir / "termination-log"
        with log.open("wb") as out:
            env = {
                **os.environ,
                **self._container_env(namespace, driver.get("env") or ()),
                "SPARK_HOME": str(spark_home),
                # The driver's Python is this one, which has featurekube and pyspark.
                "PYSPARK_PYTHON": sys.executable,
                "PYSPARK_DRIVER_PYTHON": sys.executable,
                # The job writes its report where a kubelet reads the termination message.
                **{
                    e["name"]: str(termination_log)
                    for e in driver.get("env") or ()
                    if e.get("value") == report.TERMINATION_LOG
                },
            }
            done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        message = termination_log.read_text() if termination_log.exists() else ""
        record_driver_pod(self.api, app, done.returncode, message)
        if done.returncode == 0:
            state = {"state": "COMPLETED"}
        else:
            state = {"state": "FAILED", "errorMessage": _last_error(log)}
        self._set_spark_status(
            namespace, name, {"applicationState": state, "terminationTime": _now()}
        )

    def _run_one(self, app: Mapping[str, Any]) -> None:
        try:
            self._spark_submit(app)
        except Exception as exc:  # the runtime must outlive any one job
            meta = app["metadata"]
            self._set_spark_status(
                meta["namespace"],
                meta["name"],
                {
                    "applicationState": {"state": "FAILED", "errorMessage": str(exc)},
                    "terminationTime": _now(),
                },
            )

    def _start_next_job(self) -> None:
        if self._job is not None and self._job.is_alive():
            return
        listed: dict[str, Any] = self._custom().list_cluster_custom_object(*SPARK)  # type: ignore[assignment]
        apps = listed["items"]
        waiting = [
            a
            for a in apps
            if self._mine(a["metadata"]["namespace"])
            and not ((a.get("status") or {}).get("applicationState") or {}).get("state")
        ]
        pods = self._waiting_job_pods()
        if not waiting and not pods:
            return
        app = min(waiting, key=lambda a: a["metadata"]["creationTimestamp"], default=None)
        pod = min(pods, key=lambda p: p["metadata"]["creationTimestamp"], default=None)
        if pod is not None and (
            app is None
            or pod["metadata"]["creationTimestamp"] < app["metadata"]["creationTimestamp"]
        ):
            self._mark_job_pod_running(pod)
            self._job = threading.Thread(target=self._run_job_pod, args=(pod,), daemon=True)
            self._job.start()
            return
        assert app is not None
        meta = app["metadata"]
        self._set_spark_status(
            meta["namespace"],
            meta["name"],
            {
                "applicationState": {"state": "SUBMITTED"},
                "driverInfo": {},
                "submissionID": meta["uid"],
            },
        )
        self._job = threading.Thread(target=self._run_one, args=(app,), daemon=True)
        self._job.start()

    # -- Jobs (the python engine) ---------------------------------------------------------
    #
    # The platform's job controller creates each Job's pod and writes the Job's status
    # from what the pod shows; the runtime only runs the pod and reports how it ended,
    # as a kubelet does. Writing the Job's status here instead would race that
    # controller, and the API server holds a Job's status to the controller's own rules
    # (success and failure criteria conditions before Complete or Failed, counts that
    # agree with pods, tracking finalizers on pods): the controller keeps those right.

    def _waiting_job_pods(self) -> list[dict[str, Any]]:
        """Pods of featurekube's Jobs that no one has run yet (Pending, unscheduled)."""
        core = kubernetes.client.CoreV1Api(self.api)
        listed = self.api.sanitize_for_serialization(
            core.list_pod_for_all_namespaces(label_selector=f"{VIEW_LABEL},{JOB_UID_LABEL}")
        )["items"]
        return [
            p
            for p in listed
            if self._mine(p["metadata"]["namespace"])
            and (p.get("status") or {}).get("phase", "Pending") == "Pending"
            and not p["metadata"].get("deletionTimestamp")
        ]

    def _mark_job_pod_running(self, pod: Mapping[str, Any]) -> None:
        container = pod["spec"]["containers"][0]
        now = _now()
        kubernetes.client.CoreV1Api(self.api).patch_namespaced_pod_status(
            pod["metadata"]["name"],
            pod["metadata"]["namespace"],
            {
                "status": {
                    "phase": "Running",
                    "startTime": now,
                    "containerStatuses": [
                        _container_status(container, "running", {"startedAt": now})
                    ],
                }
            },
        )

    def _run_job_pod(self, pod: Mapping[str, Any]) -> None:
        meta = pod["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        run_dir = self.work_dir / "jobs" / namespace / name
        log = run_dir / "pod.log"
        try:
            shutil.rmtree(run_dir, ignore_errors=True)
            run_dir.mkdir(parents=True)
            container = pod["spec"]["containers"][0]
            mounts = self._mount_volumes(namespace, pod["spec"], container, run_dir / "mounts")
            command = list(container.get("command") or [])
            # The image's Python is this one, which has featurekube.
            args = [_mounted(a, mounts) or a for a in container.get("args") or []]
            argv = [sys.executable, *command[1:], *args]
            termination_log = run_dir / "termination-log"
            env = {
                **os.environ,
                **self._container_env(namespace, container.get("env") or ()),
                **{
                    e["name"]: str(termination_log)
                    for e in container.get("env") or ()
                    if e.get("value") == report.TERMINATION_LOG
                },
            }
            with log.open("wb") as out:
                done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
            code = done.returncode
            message = termination_log.read_text() if termination_log.exists() else ""
        except Exception as exc:  # the runtime must outlive any one job
            code, message = 1, f"the local runtime could not run the pod: {exc}"
        if code != 0 and not message and log.exists():
            # terminationMessagePolicy FallbackToLogsOnError: the log's last lines.
            message = processes.tail(log, 80)[-2048:]
        record_job_pod(self.api, pod, code, message)

    # -- feature servers ---------------------------------------------------------------

    def _sync_servers(self) -> None:
        apps_api = kubernetes.client.AppsV1Api(self.api)
        listed = apps_api.list_deployment_for_all_namespaces(label_selector=SERVICE_LABEL)
        wanted: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        for deployment in self.api.sanitize_for_serialization(listed)["items"]:
            meta = deployment["metadata"]
            if not self._mine(meta["namespace"]):
                continue
            template = json.dumps(deployment["spec"]["template"], sort_keys=True)
            wanted[(meta["namespace"], meta["name"])] = (
                deployment,
                hashlib.sha256(template.encode()).hexdigest(),
            )
        for key in list(self._servers):
            if key not in wanted or wanted[key][1] != self._servers[key].template_hash:
                processes.stop(self._servers.pop(key).pid)
        for key, (deployment, template_hash) in wanted.items():
            if key not in self._servers:
                try:
                    self._servers[key] = self._start_server(deployment, template_hash)
                except (ApiException, KeyError) as exc:
                    # As a kubelet leaves a pod whose Secret is missing: not started.
                    print(f"runtime: {key[0]}/{key[1]}: {exc}", file=sys.stderr, flush=True)
                    continue
            server = self._servers[key]
            if server.token is not None and time.time() >= server.token.refresh_at:
                try:
                    self._refresh_token(server.token)
                except (ApiException, RuntimeError) as exc:
                    # As a kubelet does: keep the old token, try again next round.
                    print(f"runtime: {key[0]}/{key[1]}: {exc}", file=sys.stderr, flush=True)
            if processes.is_running(server.pid) and _port_open(server.port):
                self._mark_pods_ready(deployment)
        self._write_endpoints()

    def _start_server(self, deployment: Mapping[str, Any], template_hash: str) -> _Server:
        meta = deployment["metadata"]
        namespace = meta["namespace"]
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        run_dir = self.work_dir / "servers" / namespace / meta["name"]
        shutil.rmtree(run_dir, ignore_errors=True)
        mounts = self._mount_volumes(namespace, pod, container, run_dir / "mounts")
        args = [_mounted(a, mounts) or a for a in container.get("args") or []]
        port = processes.free_port()
        if "--port" in args:
            args[args.index("--port") + 1] = str(port)
        # Processes share the machine's ports, and no kubelet probes them: no metrics
        # port, nor the plaintext health port that TLS adds for the kubelet's probes.
        argv = [*self.server_command, *args, "--host", "127.0.0.1", "--metrics-port", "0"]
        argv += ["--health-port", "0"]
        env = {**os.environ, **self._container_env(namespace, container.get("env") or ())}
        # A pod talks to the API server as its ServiceAccount or not at all: the
        # runtime's own (admin) kubeconfig never reaches it.
        env.pop("KUBECONFIG", None)
        token = self._project_service_account(namespace, pod, run_dir / "serviceaccount")
        if token is not None:
            # The program reads the mount through the in-cluster paths.
            python, *program = self.server_command
            argv = [
                python,
                "-m",
                incluster.__name__,
                str(token.directory),
                *program,
                *argv[len(self.server_command) :],
            ]
            env.update(self._api_server_environment())
        pid = processes.spawn(argv, run_dir / "server.log", env=env)
        return _Server(pid, port, template_hash, token)

    def _mark_pods_ready(self, deployment: Mapping[str, Any]) -> None:
        core = kubernetes.client.CoreV1Api(self.api)
        namespace = deployment["metadata"]["namespace"]
        labels = deployment["spec"]["selector"]["matchLabels"]
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        pods = self.api.sanitize_for_serialization(
            core.list_namespaced_pod(namespace, label_selector=selector)
        )["items"]
        for pod in pods:
            if (pod.get("status") or {}).get("phase") == "Running":
                continue
            now = _now()
            core.patch_namespaced_pod_status(
                pod["metadata"]["name"],
                namespace,
                {
                    "status": {
                        "phase": "Running",
                        "podIP": "127.0.0.1",
                        "startTime": now,
                        "conditions": [
                            {"type": "Ready", "status": "True", "lastTransitionTime": now},
                            {
                                "type": "ContainersReady",
                                "status": "True",
                                "lastTransitionTime": now,
                            },
                        ],
                    }
                },
            )

    def _write_endpoints(self) -> None:
        endpoints = {
            f"{namespace}/{name}": f"127.0.0.1:{server.port}"
            for (namespace, name), server in sorted(self._servers.items())
        }
        path = self.work_dir / "endpoints.json"
        path.write_text(json.dumps(endpoints, indent=2) + "\n")

    # -- the loop ------------------------------------------------------------------------

    def step(self) -> None:
        """One round: start the next waiting SparkApplication or Job's pod, and bring
        feature servers in line."""
        self._start_next_job()
        self._sync_servers()

    def stop(self) -> None:
        """Stop every feature server (a running job finishes on its own)."""
        for server in self._servers.values():
            processes.stop(server.pid)
        self._servers.clear()

    def run_forever(self, interval: float = 1.0) -> None:
        while True:
            try:
                self.step()
            except (ApiException, OSError) as exc:
                print(f"runtime: {exc}", file=sys.stderr, flush=True)
            time.sleep(interval)


def record_driver_pod(
    api: kubernetes.client.ApiClient, app: Mapping[str, Any], exit_code: int, message: str
) -> None:
    """The finished driver's pod, owned by its application, as the Spark Operator and
    the kubelet leave it: terminated, with the termination message."""
    meta, spec = app["metadata"], app["spec"]
    core = kubernetes.client.CoreV1Api(api)
    pod_name = f"{meta['name']}-driver"
    body: Any = {  # the client takes a dict where it declares a V1Pod
        "metadata": {
            "name": pod_name,
            "labels": {**((spec.get("driver") or {}).get("labels") or {})},
            "ownerReferences": [
                {
                    "apiVersion": app["apiVersion"],
                    "kind": app["kind"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": DRIVER_CONTAINER, "image": spec.get("image") or "spark"}],
        },
    }
    try:
        core.create_namespaced_pod(meta["namespace"], body)
    except ApiException as exc:
        if exc.status != 409:
            raise
    now = _now()
    terminated = {
        "exitCode": exit_code,
        "reason": "Completed" if exit_code == 0 else "Error",
        "message": message,
        "startedAt": now,
        "finishedAt": now,
    }
    core.patch_namespaced_pod_status(
        pod_name,
        meta["namespace"],
        {
            "status": {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "containerStatuses": [
                    {
                        "name": DRIVER_CONTAINER,
                        "image": spec.get("image") or "spark",
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"terminated": terminated},
                    }
                ],
            }
        },
    )


def _container_status(
    container: Mapping[str, Any], state: str, detail: Mapping[str, Any]
) -> dict[str, Any]:
    """A pod's status of ``container`` in ``state`` (running, and then ready, or
    terminated), as the kubelet reports it."""
    running = state == "running"
    return {
        "name": container["name"],
        "image": container.get("image") or "",
        "imageID": "",
        "ready": running,
        "restartCount": 0,
        "started": running,
        "state": {state: dict(detail)},
    }


def _job_pod(
    api: kubernetes.client.ApiClient, job: Mapping[str, Any], timeout: float
) -> dict[str, Any]:
    """The pod the job controller made for ``job`` (waiting up to ``timeout`` seconds
    for it), or ``job`` itself when it is a pod."""
    if job.get("kind") == "Pod" or "containers" in job.get("spec", {}):
        return dict(job)
    core = kubernetes.client.CoreV1Api(api)
    meta = job["metadata"]
    deadline = time.monotonic() + timeout
    while True:
        pods = api.sanitize_for_serialization(
            core.list_namespaced_pod(
                meta["namespace"], label_selector=f"{JOB_UID_LABEL}={meta['uid']}"
            )
        )["items"]
        if pods:
            found: dict[str, Any] = max(pods, key=lambda p: p["metadata"]["creationTimestamp"])
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"Job {meta['namespace']}/{meta['name']} has no pod")
        time.sleep(0.2)


def record_job_pod(
    api: kubernetes.client.ApiClient,
    job: Mapping[str, Any],
    exit_code: int,
    message: str,
    timeout: float = 30.0,
) -> None:
    """The pod of ``job`` (a Job, whose pod the job controller creates, waited for up to
    ``timeout`` seconds; or that pod) as the kubelet leaves it once its container ends:
    terminated with ``exit_code`` and the termination message ``message``. The job
    controller then counts it and writes the Job's status."""
    pod = _job_pod(api, job, timeout)
    container = pod["spec"]["containers"][0]
    now = _now()
    started = (pod.get("status") or {}).get("startTime") or now
    terminated = {
        "exitCode": exit_code,
        "reason": "Completed" if exit_code == 0 else "Error",
        "message": message.encode()[:TERMINATION_MESSAGE_LIMIT].decode(errors="ignore"),
        "startedAt": started,
        "finishedAt": now,
    }
    kubernetes.client.CoreV1Api(api).patch_namespaced_pod_status(
        pod["metadata"]["name"],
        pod["metadata"]["namespace"],
        {
            "status": {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "startTime": started,
                "containerStatuses": [_container_status(container, "terminated", terminated)],
            }
        },
    )


def _spark_home() -> Path:
    """pyspark's own installation: it carries bin/spark-submit and the jars."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise RuntimeError("pyspark is not installed: pip install 'featurekube[spark]'")
    return Path(spec.origin).parent


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _last_error(log: Path) -> str:
    lines = [line for line in processes.tail(log, 200).splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "error" in line or "Exception" in line:
            return line.strip()[:1000]
    return (lines[-1] if lines else "the job exited with an error").strip()[:1000]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m featurekube._platform.runtime --kubeconfig K --work-dir D``."""
    parser = argparse.ArgumentParser(prog="featurekube-runtime", description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--work-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    runtime = Runtime(kubernetes.config.new_client_from_config(args.kubeconfig), args.work_dir)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    # Feature servers run in sessions of their own: stop them on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        runtime.run_forever()
    finally:
        runtime.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
