"""`make demo`: the whole loop on the local platform, told as it happens.

Starts the platform with the operator and the local runtime, writes the example raw
data to S3, applies examples/, waits while the operator materializes each view with
local Spark and runs the feature servers, then fetches an online feature vector over
gRPC and a point-in-time training frame with the SDK.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OFFLINE_URI = "s3://featurekube-demo/offline"
NAMESPACE = "rides"
TIMEOUT = 1200.0


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def _ready(body: dict[str, Any]) -> tuple[bool, str]:
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition["type"] == "Ready":
            return condition["status"] == "True", condition.get("message", "")
    return False, "not reconciled yet"


def main() -> int:
    from featurekube import errors
    from featurekube._platform import platform

    say("starting the local platform: Kubernetes API, S3 and DynamoDB, operator, runtime")
    settings = platform.PlatformSettings(
        crd_dirs=(REPO / "crds",), operator_offline_uri=OFFLINE_URI
    )
    local = platform.LocalPlatform(settings)
    running = local.endpoints()
    if running is not None and "operator" not in running.pids:
        # Started by `make up`, without the operator: start it again with the operator,
        # unless another process holds it (then stop() refuses and names that process).
        print(f"    restarting the platform in {local.layout.root} with the operator")
        try:
            local.stop()
        except errors.PlatformInUseError as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 1
    elif running is not None:
        print(f"    reusing the platform already running in {local.layout.root}")
    endpoints = local.start()
    os.environ.update(endpoints.environment())
    print(f"    Kubernetes API {endpoints.apiserver_url}, S3/DynamoDB {endpoints.aws_endpoint_url}")
    # Held while the demo runs, so that a `featurekube dev down` elsewhere does not
    # stop the platform halfway; it keeps running afterwards, and says how to stop it.
    with local.hold():
        status = _tour(local, endpoints)
    print(
        f"\nThe local platform keeps running in {local.layout.root}; stop it with "
        "`make down` (or `.venv/bin/featurekube dev down`)."
    )
    return status


def _tour(local: Any, endpoints: Any) -> int:
    """Data, definitions, materialization, serving and training, on a started platform."""
    import boto3
    import kubernetes.client
    import kubernetes.config
    import yaml

    from featurekube._platform import platform

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
    for path in sorted((REPO / "examples").glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        plural = "featureviews" if body["kind"] == "FeatureView" else "featureservices"
        _apply(custom, plural, body)
        print(f"    {body['kind']}/{body['metadata']['name']}")

    say("materializing: the operator starts one Spark job per view; the runtime runs them")
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

    servers = json.loads((endpoints.kubeconfig.parent / "runtime" / "endpoints.json").read_text())
    target = servers[f"{NAMESPACE}/eta-model"]
    say(f"an online feature vector from the eta-model feature server ({target}, gRPC)")
    drivers = [1001, 1002, 1003]
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

    kubectl = platform.resolve_k8s_bin_dir(local.settings) / "kubectl"
    say("explore further")
    print('    eval "$(.venv/bin/featurekube dev env)"')
    print(f"    {kubectl} get features -A")
    get = f"--target {target} --feature-service eta-model --entity driver_id=1001"
    print(f"    .venv/bin/featurekube get {get}")
    print(f"    logs: {endpoints.log_dir} (operator.log, runtime.log)")
    print(f"    jobs and servers: {endpoints.kubeconfig.parent / 'runtime'}")
    return 0


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
