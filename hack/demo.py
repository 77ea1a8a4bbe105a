"""`make demo`: the whole loop on the local platform's real node, told as it happens.

    python hack/demo.py [--local]

Starts the platform with a node (`featurekube dev up --node`: the kubelet, containerd,
CoreDNS and the Kubeflow Spark Operator) and loads featurekube's images into it, installs
charts/featurekube with helm, writes the example raw data to S3, applies examples/,
waits while the operator's SparkApplications materialize each view as Spark driver and
executor pods and its feature servers start as pods behind Services, then fetches an
online feature vector from the eta-model Service (through `kubectl port-forward`) and a
point-in-time training frame with the SDK.

``--local`` (`make demo LOCAL=1`) is the fast mode without the node: the operator as a
process and the local runtime running each window with local Spark and each feature
server as a process.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OFFLINE_URI = "s3://featurekube-demo/offline"
NAMESPACE = "rides"
TIMEOUT = 1200.0
RELEASE = "fk"
GRPC_PORT = 50051
OPERATOR_SECONDS = 600.0
SERVER_ACCOUNTS = ("eta-feature-server",)
"""ServiceAccounts the examples' servers name (spec.server.serviceAccountName) besides
the chart's own."""
NODE_IMAGES = ("operator", "feature-server", "spark", "spark-operator")


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def _ready(body: dict[str, Any]) -> tuple[bool, str]:
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition["type"] == "Ready":
            return condition["status"] == "True", condition.get("message", "")
    return False, "not reconciled yet"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--local",
        action="store_true",
        help="the fast mode: the local runtime plays the kubelet and the Spark Operator",
    )
    args = parser.parse_args(argv)
    return _local() if args.local else _node()


def _node() -> int:
    """The demo on the node: images loaded, the chart installed, the tour."""
    from featurekube._platform import chart
    from featurekube._platform import platform as local_platform

    say("building (or finding built) the images: operator, feature server, Spark, Spark Operator")
    built = subprocess.run(
        [sys.executable, str(REPO / "hack" / "images" / "build.py"), *NODE_IMAGES],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    images = dict(zip(NODE_IMAGES, (Path(line) for line in built.stdout.split()), strict=True))

    say("starting the local platform with a node: kubelet, containerd, CoreDNS, Spark Operator")
    settings = local_platform.PlatformSettings(
        node=True, runtime=False, image_dir=images["spark-operator"].parent
    )
    local = local_platform.LocalPlatform(settings)
    endpoints = _start(local, lambda running: running.node, "a node")
    if endpoints is None:
        return 1
    print(f"    node {endpoints.node}, Spark Operator {endpoints.spark_operator or 'missing'}")
    if not endpoints.spark_operator:
        print("demo: the Spark Operator is not installed: `make spark-operator`", file=sys.stderr)
        return 1
    local.load_images([images["operator"], images["feature-server"]])
    kubectl = local_platform.resolve_k8s_bin_dir(local.settings) / "kubectl"
    with local.hold():
        status = _tour(
            endpoints,
            install=lambda api: _install_chart(api, endpoints),
            reach=lambda: chart.PortForward(
                kubectl, endpoints.kubeconfig, NAMESPACE, "eta-model", GRPC_PORT
            ),
            fit=chart.fit_to_node,
        )
        if status == 0:
            say("explore further")
            print('    eval "$(.venv/bin/featurekube dev env)"')
            print(f"    {kubectl} -n {NAMESPACE} get features,sparkapplications,pods")
            print(f"    {kubectl} -n {NAMESPACE} port-forward service/eta-model 50051:50051")
            get = "--target 127.0.0.1:50051 --feature-service eta-model --entity driver_id=1001"
            print(f"    .venv/bin/featurekube get {get}")
            print(f"    platform logs: {endpoints.log_dir}")
    print(
        f"\nThe local platform and its node keep running in {local.layout.root}; stop them "
        "with `make down` (or `.venv/bin/featurekube dev down`)."
    )
    return status


def _start(local: Any, fits: Callable[[Any], bool], what: str) -> Any:
    """Start ``local``, or reuse it when it runs as the demo needs (``fits``). One that
    does not (say, started by `make up` without ``what``) is started again, unless
    another process holds it: then stop() refuses, names that process, and this
    returns None."""
    from featurekube import errors

    running = local.endpoints()
    if running is not None and not fits(running):
        print(f"    restarting the platform in {local.layout.root} with {what}")
        try:
            local.stop()
        except errors.PlatformInUseError as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return None
    elif running is not None:
        print(f"    reusing the platform with {what} already running in {local.layout.root}")
    endpoints = local.start()
    os.environ.update(endpoints.environment())
    print(f"    Kubernetes API {endpoints.apiserver_url}, S3/DynamoDB {endpoints.aws_endpoint_url}")
    return endpoints


def _install_chart(api: Any, endpoints: Any) -> None:
    """helm install of charts/featurekube in the demo's namespace, with the values a
    node needs; feature servers in plaintext and without token review (a laptop)."""
    import kubernetes.client

    from featurekube._platform import chart

    say(f"helm install of charts/featurekube as {RELEASE} in namespace {NAMESPACE}")
    core = kubernetes.client.CoreV1Api(api)
    for account in SERVER_ACCOUNTS:
        _create(lambda body: core.create_namespaced_service_account(NAMESPACE, body), account)
    _create(
        lambda body: core.create_namespaced_secret(NAMESPACE, body),
        chart.AWS_SECRET,
        chart.namespace_aws_secret(),
    )
    helm = subprocess.run(
        [str(REPO / "hack" / "helm" / "build.sh")], stdout=subprocess.PIPE, text=True, check=True
    ).stdout.split()[-1]
    values = chart.node_values(
        endpoints,
        NAMESPACE,
        offline_uri=OFFLINE_URI,
        table_prefix="featurekube.",
        server_auth="none",
        tls_secret="",
    )
    state = endpoints.kubeconfig.parent
    chart.install(
        [helm],
        REPO / "charts" / "featurekube",
        RELEASE,
        NAMESPACE,
        endpoints.kubeconfig,
        values,
        state / "demo-values.yaml",
    )
    waited = chart.wait_for_operator(api, NAMESPACE, RELEASE, OPERATOR_SECONDS)
    print(f"    the operator's pod Ready in {waited:.0f} s")


def _create(create: Callable[[dict[str, Any]], Any], name: str, body: Any = None) -> None:
    """Create ``body`` (by default an object with just its name), unless it exists."""
    import kubernetes.client

    try:
        create(body or {"metadata": {"name": name}})
    except kubernetes.client.exceptions.ApiException as exc:
        if exc.status != 409:
            raise


def _local() -> int:
    """The demo's fast mode: the operator and the local runtime as processes."""
    from featurekube._platform import platform

    say("starting the local platform: Kubernetes API, S3 and DynamoDB, operator, runtime")
    settings = platform.PlatformSettings(
        crd_dirs=(REPO / "crds",), operator_offline_uri=OFFLINE_URI
    )
    local = platform.LocalPlatform(settings)
    endpoints = _start(local, lambda running: "operator" in running.pids, "the operator")
    if endpoints is None:
        return 1
    # Held while the demo runs, so that a `featurekube dev down` elsewhere does not
    # stop the platform halfway; it keeps running afterwards, and says how to stop it.
    with local.hold():
        status = _tour(endpoints, reach=lambda: _local_server(endpoints))
        if status == 0:
            _explore_local(local, endpoints)
    print(
        f"\nThe local platform keeps running in {local.layout.root}; stop it with "
        "`make down` (or `.venv/bin/featurekube dev down`)."
    )
    return status


@dataclasses.dataclass(frozen=True)
class Server:
    """Where a feature server is reached from this machine."""

    address: str


def _local_server(endpoints: Any) -> contextlib.AbstractContextManager[Server]:
    """The eta-model server the local runtime runs, at the address it recorded."""
    servers = json.loads((endpoints.kubeconfig.parent / "runtime" / "endpoints.json").read_text())
    return contextlib.nullcontext(Server(servers[f"{NAMESPACE}/eta-model"]))


def _tour(
    endpoints: Any,
    *,
    reach: Callable[[], contextlib.AbstractContextManager[Any]],
    install: Callable[[Any], None] = lambda api: None,
    fit: Callable[[dict[str, Any]], dict[str, Any]] = lambda body: body,
) -> int:
    """Data, definitions, materialization, serving and training, on a started platform:
    ``install`` sets featurekube up in the namespace, ``fit`` adapts each example to the
    platform, and ``reach`` gives the eta-model server's address (``.address``)."""
    import boto3
    import kubernetes.client
    import kubernetes.config
    import yaml

    say("writing the example raw data to s3://featurekube-demo/raw/ (examples/generate_data.py)")
    s3 = boto3.client("s3")
    if "featurekube-demo" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket="featurekube-demo")
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).date().isoformat()
    generate = [sys.executable, str(REPO / "examples" / "generate_data.py")]
    generate += ["--out", "s3://featurekube-demo/raw/", "--start", start, "--days", "3"]
    generate += ["--drivers", "40", "--riders", "200", "--seed", "7"]
    subprocess.run(generate, check=True)

    say(f"applying examples/ to namespace {NAMESPACE}")
    api = kubernetes.config.new_client_from_config(str(endpoints.kubeconfig))
    core, custom = kubernetes.client.CoreV1Api(api), kubernetes.client.CustomObjectsApi(api)
    if NAMESPACE not in [n.metadata.name for n in core.list_namespace().items]:
        core.create_namespace({"metadata": {"name": NAMESPACE}})
    install(api)
    for path in sorted((REPO / "examples").glob("*.yaml")):
        body = fit(yaml.safe_load(path.read_text()))
        plural = "featureviews" if body["kind"] == "FeatureView" else "featureservices"
        _apply(custom, plural, body)
        print(f"    {body['kind']}/{body['metadata']['name']}")

    say("materializing: the operator starts one Spark job per view, and the feature servers")
    started, seen = time.monotonic(), {}
    while True:
        states = {}
        for plural in ("featureviews", "featureservices"):
            for item in custom.list_namespaced_custom_object(
                "featurekube.dev", "v1alpha1", NAMESPACE, plural
            )["items"]:
                states[f"{item['kind']}/{item['metadata']['name']}"] = _ready(item)
        for name, state in states.items():
            if seen.get(name) != state:
                print(
                    f"    {name}: {'Ready' if state[0] else 'not ready'} — {state[1]}", flush=True
                )
                seen[name] = state
        if all(ready for ready, _ in states.values()):
            break
        if time.monotonic() - started > TIMEOUT:
            print(f"not everything became Ready within {TIMEOUT:.0f} s; logs: {endpoints.log_dir}")
            return 1
        time.sleep(3)
    print(f"    everything Ready in {time.monotonic() - started:.0f} s")

    from featurekube.online.client import OnlineClient
    from featurekube.store import FeatureStore

    drivers = [1001, 1002, 1003]
    with reach() as server:
        target = server.address
        say(f"an online feature vector from the eta-model feature server ({target}, gRPC)")
        with OnlineClient(target) as client:
            client.push(
                "driver-location-live",
                {
                    "driver_id": drivers,
                    "current_zone_id": [12, 40, 7],
                    "current_speed_kmh": [31.5, 12.0, 48.2],
                    "event_timestamp": [dt.datetime.now(dt.UTC)] * 3,
                },
            )
            vector = client.get_online_features(
                columns={"driver_id": drivers},
                feature_service="eta-model",
                request_data={"trip_distance_km": [4.2, 9.0, 2.5], "pickup_hour": [8, 13, 18]},
            )
    table = vector.to_arrow(statuses=True).to_pandas().set_index("driver_id")
    values = table[[c for c in table.columns if not c.endswith("__status")]].T
    statuses = table[[c for c in table.columns if c.endswith("__status")]]
    print(values.to_string(float_format=lambda x: f"{x:.3f}"))
    counts = statuses.stack().value_counts().to_dict()
    print(f"    statuses: {', '.join(f'{n} {s}' for s, n in counts.items())}")

    say("a point-in-time training frame from the offline store (SDK, no JVM)")
    import pandas as pd

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    entity_df = pd.DataFrame(
        {
            "driver_id": [1001, 1001, 1002, 1003],
            "event_timestamp": [now - dt.timedelta(hours=h) for h in (30, 2, 20, 5)],
            "trip_distance_km": [3.1, 7.4, 12.0, 1.8],
            "pickup_hour": [8, 17, 22, 6],
        }
    )
    store = FeatureStore.from_cluster(NAMESPACE)
    frame = store.get_historical_features(entity_df, feature_service="eta-model").to_pandas()
    shown = ["driver_id", "event_timestamp", "trips_1d", "avg_trip_speed_kmh_7d", "vehicle_type"]
    shown += ["naive_eta_min", "is_rush_hour"]
    print(frame[shown].to_string(float_format=lambda x: f"{x:.3f}"))
    print(
        f"    ({len(frame.columns)} columns in all; the live location was pushed after these times)"
    )

    return 0


def _explore_local(local: Any, endpoints: Any) -> None:
    from featurekube._platform import platform

    servers = json.loads((endpoints.kubeconfig.parent / "runtime" / "endpoints.json").read_text())
    target = servers[f"{NAMESPACE}/eta-model"]
    kubectl = platform.resolve_k8s_bin_dir(local.settings) / "kubectl"
    say("explore further")
    print('    eval "$(.venv/bin/featurekube dev env)"')
    print(f"    {kubectl} get features -A")
    get = f"--target {target} --feature-service eta-model --entity driver_id=1001"
    print(f"    .venv/bin/featurekube get {get}")
    print(f"    logs: {endpoints.log_dir} (operator.log, runtime.log)")
    print(f"    jobs and servers: {endpoints.kubeconfig.parent / 'runtime'}")


def _apply(custom: Any, plural: str, body: dict[str, Any]) -> None:
    """Create, or replace what an earlier demo created."""
    import kubernetes.client

    name = body["metadata"]["name"]
    try:
        custom.create_namespaced_custom_object(
            "featurekube.dev", "v1alpha1", NAMESPACE, plural, body
        )
    except kubernetes.client.exceptions.ApiException as exc:
        if exc.status != 409:
            raise
        live = custom.get_namespaced_custom_object(
            "featurekube.dev", "v1alpha1", NAMESPACE, plural, name
        )
        body = {
            **body,
            "metadata": {
                **body["metadata"],
                "resourceVersion": live["metadata"]["resourceVersion"],
            },
        }
        custom.replace_namespaced_custom_object(
            "featurekube.dev", "v1alpha1", NAMESPACE, plural, name, body
        )


if __name__ == "__main__":
    sys.exit(main())
