"""A moto server that enforces IAM policies, for the tests of per-namespace data access
(importable as ``moto_iam``; run as ``python tests/moto_iam.py PORT``).

moto evaluates the IAM policies of the user whose access key signs a request once its
authentication is on (``POST /moto-api/reset-auth`` with the number of requests still
let through unchecked: 0). S3 requests are checked against the bucket's and object's
ARNs, as AWS does; DynamoDB requests moto checks against ``*`` only, so this server
names the table a request is about (its ``TableName``, the one table of a batch, or its
``ResourceArn``), so that a policy scoped to tables is evaluated as AWS evaluates it;
and it checks signatures over the query as the client signed it (see
:func:`_encoded_query`), so that listing under a prefix works for whoever may.

It listens on loopback only, beside the platform's own moto (whose authentication stays
off), and starts with authentication off, so that a test can create its users, keys,
buckets and tables as an administrator before :func:`enforce` turns it on.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

ACCOUNT = "123456789012"
"""moto's default account."""
LOOPBACK = "127.0.0.1"


def _table_resource(self: Any) -> str:
    body = self.body if isinstance(self.body, dict) else {}
    name = body.get("TableName")
    items = body.get("RequestItems") or {}
    if not name and len(items) == 1:
        name = next(iter(items))
    if name:
        return f"arn:aws:dynamodb:{self.region}:{self.current_account}:table/{name}"
    return str(body.get("ResourceArn") or "*")


def _encoded_query(path: str) -> str:
    """``path`` with its query's values URI-encoded again, as SigV4 signs them: the
    server hands moto the query decoded (``prefix=trips/``), and moto's signature check
    would compare a signature over ``prefix=trips/`` with the client's over
    ``prefix=trips%2F``, refusing every listing under a prefix."""
    base, _, query = path.partition("?")
    if not query:
        return path
    pairs = (pair.partition("=") for pair in query.split("&"))
    return base + "?" + "&".join(f"{k}{eq}{quote(unquote(v), safe='-_.~')}" for k, eq, v in pairs)


def serve(port: int) -> None:
    """Run the server (blocks)."""
    from moto import server
    from moto.dynamodb.responses import DynamoHandler
    from moto.iam import access_control

    DynamoHandler._determine_resource = _table_resource  # type: ignore[attr-defined]
    create = access_control.IAMRequestBase._create_aws_request

    def _create_aws_request(self: Any) -> Any:
        self._path = _encoded_query(self._path)
        return create(self)

    access_control.IAMRequestBase._create_aws_request = _create_aws_request  # type: ignore[method-assign]
    server.main(["-H", LOOPBACK, "-p", str(port)])


@dataclass(frozen=True)
class Keys:
    """An IAM user's access key."""

    user: str
    access_key_id: str
    secret_access_key: str

    def client(self, service: str, endpoint: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )


@contextmanager
def running(port: int, log: Path) -> Iterator[str]:
    """The server on ``port`` while the block runs; yields its endpoint."""
    endpoint = f"http://{LOOPBACK}:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, __file__, str(port)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection((LOOPBACK, port), timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.2)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def enforce(endpoint: str) -> None:
    """Turn authentication on: every request from now on is checked."""
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=b"0",
        method="POST",
        # Not a form: the server reads the body as it is.
        headers={"Content-Type": "text/plain"},
    )
    urllib.request.urlopen(request, timeout=10).close()


def user(iam: Any, name: str, statements: Sequence[dict[str, Any]]) -> Keys:
    """An IAM user with an inline policy of ``statements``, and an access key of it."""
    iam.create_user(UserName=name)
    iam.put_user_policy(
        UserName=name,
        PolicyName=f"{name}-data",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": list(statements)}),
    )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Keys(name, key["AccessKeyId"], key["SecretAccessKey"])


def tenant_statements(buckets: Sequence[str], table_prefix: str) -> list[dict[str, Any]]:
    """What a tenant may do: everything in its own buckets, and with its own tables."""
    return [
        {
            "Effect": "Allow",
            "Action": "s3:*",
            "Resource": [r for b in buckets for r in (f"arn:aws:s3:::{b}", f"arn:aws:s3:::{b}/*")],
        },
        {
            "Effect": "Allow",
            "Action": "dynamodb:*",
            "Resource": f"arn:aws:dynamodb:*:{ACCOUNT}:table/{table_prefix}*",
        },
    ]


ADMIN = [{"Effect": "Allow", "Action": "*", "Resource": "*"}]


if __name__ == "__main__":
    serve(int(sys.argv[1]))
