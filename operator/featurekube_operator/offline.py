"""The operator's side of the offline store: deleting a retired version's Delta
table; does I/O.

A version's table is everything under ``<offline_uri>/<namespace>/<view>/v<N>/``: its
data files and its ``_delta_log``. Deleting it is idempotent (nothing there is
fine), so an operator stopped half-way finishes on its next attempt.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3

__all__ = ["OfflineData"]

_BATCH = 1000
"""Keys one DeleteObjects request takes, S3's own limit."""


class OfflineData:
    """Deletes a version's offline table: on S3 (``s3://``, ``s3a://``) or on disk."""

    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        # Made when first needed: most reconciles delete nothing.
        if self._client is None:
            self._client = boto3.client("s3")
        return self._client

    def delete(self, uri: str) -> int:
        """Delete every object of the table at ``uri``; returns how many were deleted."""
        parsed = urlparse(uri)
        if parsed.scheme in ("s3", "s3a"):
            return self._delete_s3(parsed.netloc, parsed.path.strip("/") + "/")
        if parsed.scheme not in ("", "file"):
            raise ValueError(f"cannot delete offline data at {uri}: not an s3:// or file URI")
        path = Path(parsed.path if parsed.scheme else uri)
        if not path.exists():
            return 0
        count = sum(1 for p in path.rglob("*") if p.is_file())
        shutil.rmtree(path)
        return count

    def _delete_s3(self, bucket: str, prefix: str) -> int:
        # The trailing slash keeps v1 from matching v10.
        deleted = 0
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            keys = [{"Key": item["Key"]} for item in page.get("Contents") or ()]
            for start in range(0, len(keys), _BATCH):
                batch = keys[start : start + _BATCH]
                answer = self.client.delete_objects(
                    Bucket=bucket, Delete={"Objects": batch, "Quiet": True}
                )
                errors = answer.get("Errors") or ()
                if errors:
                    first = errors[0]
                    raise RuntimeError(
                        f"cannot delete s3://{bucket}/{first.get('Key')}: "
                        f"{first.get('Code')} {first.get('Message')}"
                    )
                deleted += len(batch)
        return deleted
