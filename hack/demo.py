"""`make demo`: start the local platform and show each of its parts answering."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import boto3

from featurekube._platform import platform


def main() -> int:
    local = platform.LocalPlatform(platform.PlatformSettings(crd_dirs=(Path("crds"),)))
    print(f"starting the local platform in {local.layout.root} ...", flush=True)
    endpoints = local.start()
    env = endpoints.environment()
    kubectl = platform.resolve_k8s_bin_dir(local.settings) / "kubectl"
    print(f"\nKubernetes API at {endpoints.apiserver_url}:", flush=True)
    subprocess.run([str(kubectl), "--kubeconfig", env["KUBECONFIG"], "version"], check=True)
    subprocess.run([str(kubectl), "--kubeconfig", env["KUBECONFIG"], "get", "crds"], check=True)
    session = boto3.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    )
    s3 = session.client("s3", endpoint_url=endpoints.aws_endpoint_url)
    dynamodb = session.client("dynamodb", endpoint_url=endpoints.aws_endpoint_url)
    buckets = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    tables = dynamodb.list_tables()["TableNames"]
    print(f"\nS3 and DynamoDB at {endpoints.aws_endpoint_url}: buckets {buckets}, tables {tables}")
    print("\nUse it from a shell:")
    print('  eval "$(.venv/bin/featurekube dev env)"')
    print(f"  {kubectl} get namespaces")
    print(f"Logs: {endpoints.log_dir}    Stop it: make down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
