"""Who is calling, and may they: ServiceAccount tokens verified by the Kubernetes API
(TokenReview), and the serving plan's access lists (network I/O in the reviewer only).

A caller sends ``authorization: Bearer <token>`` metadata: a ServiceAccount token, for
a pod the one Kubernetes projects into it. :class:`Authenticator` asks the API server
whose token it is once, and keeps the answer for ``ttl`` seconds (never past the
token's own expiry) in a cache of at most ``max_entries`` tokens, so requests do not
each cost an API call; concurrent requests with the same unknown token share one
review, and at most ``max_reviews`` reviews run at once, so a flood of made-up tokens
does not become a flood of API calls. Refusals are not kept: a token that was just
created may be tried again at once. Whether the caller may read or push is decided on
every request against the plan (:func:`authorize`), so a new plan takes effect without
waiting for the cache.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from featurekube import serving_access
from featurekube_server import errors

__all__ = [
    "Authenticator",
    "Caller",
    "KubernetesReviewer",
    "Reviewer",
    "authorize",
    "bearer_token",
]

log = logging.getLogger("featurekube_server")

MAX_TOKEN_BYTES = 16 * 1024
"""Longest token taken; ServiceAccount tokens are about 1 KiB."""


@dataclasses.dataclass(frozen=True)
class Caller:
    """Whom a token belongs to, as the Kubernetes API says."""

    username: str
    """E.g. ``system:serviceaccount:rides:eta-model``."""
    groups: tuple[str, ...] = ()


class Reviewer(Protocol):
    """Asks who a token belongs to."""

    async def review(self, token: str) -> Caller | None:
        """The token's caller; None when the token is not accepted. Raises
        :class:`errors.AuthUnavailableError` when no answer came."""
        ...


class KubernetesReviewer:
    """Reviews tokens with the Kubernetes API's TokenReview (the server's
    ServiceAccount needs ``create`` on ``tokenreviews``: ClusterRole
    ``system:auth-delegator``)."""

    def __init__(self, api_client: Any = None, audiences: Sequence[str] = ()) -> None:
        """``api_client``: a ``kubernetes.client.ApiClient``; None: the pod's own
        (in-cluster) or, outside a cluster, the kubeconfig's."""
        import kubernetes.client
        import kubernetes.config

        if api_client is None:
            try:
                kubernetes.config.load_incluster_config()
            except kubernetes.config.ConfigException:
                kubernetes.config.load_kube_config()
            api_client = kubernetes.client.ApiClient()
        self._api = kubernetes.client.AuthenticationV1Api(api_client)
        self._audiences = list(audiences)

    async def review(self, token: str) -> Caller | None:
        return await asyncio.to_thread(self._review, token)

    def _review(self, token: str) -> Caller | None:
        import kubernetes.client

        spec = kubernetes.client.V1TokenReviewSpec(token=token, audiences=self._audiences or None)
        try:
            answer = self._api.create_token_review(kubernetes.client.V1TokenReview(spec=spec))
        except (kubernetes.client.ApiException, OSError) as exc:
            status = getattr(exc, "status", None)
            raise errors.AuthUnavailableError(
                "the Kubernetes API did not review the caller's token"
                f"{f' (HTTP {status})' if status else ''}: {getattr(exc, 'reason', exc)}; the "
                "feature server's ServiceAccount needs create on tokenreviews "
                "(ClusterRole system:auth-delegator)"
            ) from exc
        status = answer.status
        if status is None or not status.authenticated or status.user is None:
            return None
        return Caller(status.user.username or "", tuple(status.user.groups or ()))


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The token of the call's ``authorization: Bearer <token>`` metadata; raises
    :class:`errors.UnauthenticatedError` without one."""
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        scheme, _, token = text.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise errors.UnauthenticatedError(
                "the authorization metadata is not 'Bearer <token>': send a ServiceAccount "
                "token as 'authorization: Bearer <token>'"
            )
        if len(token) > MAX_TOKEN_BYTES:
            raise errors.UnauthenticatedError(
                f"the token has {len(token)} characters; at most {MAX_TOKEN_BYTES} are taken"
            )
        return token
    raise errors.UnauthenticatedError(
        "no token: this feature server takes calls with a Kubernetes ServiceAccount token "
        "as 'authorization: Bearer <token>' metadata (OnlineClient(token_file=...), "
        "featurekube get --token-file)"
    )


def _token_expiry(token: str) -> float | None:
    """The ``exp`` (seconds since the epoch) a JWT states, read without verifying it
    (the API server verified it); None when it states none."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        expiry = payload.get("exp") if isinstance(payload, dict) else None
    except (ValueError, TypeError):
        return None
    return float(expiry) if isinstance(expiry, int | float) else None


class Authenticator:
    """Tokens to callers, through a :class:`Reviewer` and a bounded cache of accepted
    tokens (kept by their SHA-256, never the token itself)."""

    def __init__(
        self,
        reviewer: Reviewer,
        *,
        ttl: float = 60.0,
        max_entries: int = 10_000,
        max_reviews: int = 16,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl < 0 or max_entries < 1 or max_reviews < 1:
            raise ValueError(
                f"ttl must not be negative nor max_entries or max_reviews below 1, got {ttl}, "
                f"{max_entries} and {max_reviews}"
            )
        self._reviewer = reviewer
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._cache: collections.OrderedDict[bytes, tuple[float, Caller]] = (
            collections.OrderedDict()
        )
        self._pending: dict[bytes, asyncio.Future[Caller | None]] = {}
        self._reviewing = asyncio.Semaphore(max_reviews)
        self.reviews = 0
        """TokenReviews asked for so far."""

    def __len__(self) -> int:
        return len(self._cache)

    async def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
        """The caller of a call with ``metadata``; raises
        :class:`errors.UnauthenticatedError` or :class:`errors.AuthUnavailableError`."""
        token = bearer_token(metadata)
        key = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None:
            if cached[0] > now:
                self._cache.move_to_end(key)
                return cached[1]
            del self._cache[key]
        caller = await self._review_once(key, token)
        if caller is None:
            raise errors.UnauthenticatedError(
                "the Kubernetes API does not accept the token (TokenReview): it has expired, "
                "its ServiceAccount was deleted, or it is for another audience"
            )
        expiry = now + self._ttl
        stated = _token_expiry(token)
        if stated is not None:
            expiry = min(expiry, stated)
        if expiry > now:
            self._cache[key] = (expiry, caller)
            self._cache.move_to_end(key)
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        return caller

    async def _review_once(self, key: bytes, token: str) -> Caller | None:
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Caller | None] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            async with self._reviewing:
                self.reviews += 1
                caller = await self._reviewer.review(token)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: the waiters, if any, raise it themselves
            raise
        finally:
            del self._pending[key]
        future.set_result(caller)
        return caller


def authorize(caller: Caller, subjects: Sequence[str], action: str, service: str) -> None:
    """Raise :class:`errors.AccessDeniedError` unless ``caller`` is one of ``subjects``
    (the plan's readers or pushers); ``action`` and ``service`` name them in the
    message."""
    if serving_access.allows(subjects, caller.username):
        return
    listed = ", ".join(subjects) or "nobody"
    raise errors.AccessDeniedError(
        f"{caller.username} may not {action} FeatureService {service}: its spec.access."
        f"{'push' if action == 'push' else 'read'} grants {listed}; add the caller there"
    )
