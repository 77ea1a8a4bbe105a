"""An HTTP proxy in front of moto that counts what a client asks of S3 and DynamoDB.

    python -m benchmarks._counting_proxy --target http://127.0.0.1:PORT --port PORT

A client pointed at it (``AWS_ENDPOINT_URL``) is served by the target as before; the
proxy counts each request by service and operation (DynamoDB's ``X-Amz-Target``, S3's
method) with the bytes of the responses, and answers ``GET /__counts`` with them as
JSON (``DELETE /__counts`` starts over). It runs in a process of its own, so that a
benchmark measuring its own CPU time does not count the proxy's.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import sys
import threading
import urllib.parse
from collections import Counter
from typing import Any

_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class _Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()

    def add(self, operation: str, size: int) -> None:
        with self.lock:
            self.requests[operation] += 1
            self.bytes[operation] += size

    def document(self) -> dict[str, Any]:
        with self.lock:
            return {"requests": dict(self.requests), "bytes": dict(self.bytes)}

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()
            self.bytes.clear()


def _handler(target: urllib.parse.SplitResult, counts: _Counts) -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: Any) -> None:
            pass

        def _forward(self) -> None:
            if self.path == "/__counts":
                if self.command == "DELETE":
                    counts.clear()
                body = json.dumps(counts.document()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            length = int(self.headers.get("Content-Length") or 0)
            payload = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            amz_target = self.headers.get("X-Amz-Target")
            if amz_target:
                operation = f"dynamodb {amz_target.rsplit('.', 1)[-1]}"
            elif "list-type=" in self.path or self.path.rstrip("/").count("/") < 2:
                operation = f"s3 LIST {self.command}"  # a listing, or the bucket itself
            else:
                operation = f"s3 {self.command}"
            connection = http.client.HTTPConnection(
                target.hostname or "127.0.0.1", target.port, timeout=60
            )
            try:
                connection.request(self.command, self.path, body=payload, headers=headers)
                response = connection.getresponse()
                data = response.read()
            finally:
                connection.close()
            counts.add(operation, len(data))
            self.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in _HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            # A HEAD's length is the object's, not the empty body's.
            stated = response.getheader("Content-Length") if self.command == "HEAD" else None
            self.send_header("Content-Length", stated or str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    return Handler


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args(argv)
    handler = _handler(urllib.parse.urlsplit(arguments.target), _Counts())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", arguments.port), handler)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
