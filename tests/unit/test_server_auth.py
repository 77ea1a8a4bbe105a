"""Who may call a feature server: subjects, bearer tokens, the token cache and the
access lists of the plan; no I/O (the reviewer is a stand-in)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from featurekube import serving_access, serving_plan
from featurekube.spec import v1alpha1
from featurekube_server import auth, errors, plan

SA = "system:serviceaccount:"


@pytest.mark.parametrize(
    ("subject", "normalized"),
    [
        ("rides/eta-model", f"{SA}rides:eta-model"),
        ("rides/*", f"{SA}rides:*"),
        (f"{SA}fraud:scorer", f"{SA}fraud:scorer"),
        (f"{SA}fraud:*", f"{SA}fraud:*"),
    ],
)
def test_a_subject_is_normalized_to_its_user_name(subject: str, normalized: str) -> None:
    assert serving_access.normalize_subject(subject) == normalized


@pytest.mark.parametrize(
    "subject", ["rides", "Rides/eta", "rides/eta/x", "system:serviceaccount:rides", "*/eta", ""]
)
def test_anything_but_a_service_account_is_refused_as_a_subject(subject: str) -> None:
    with pytest.raises(ValueError, match="is not a ServiceAccount"):
        serving_access.normalize_subject(subject)


def test_a_subject_matches_its_account_or_every_account_of_its_namespace() -> None:
    subjects = [f"{SA}rides:eta-model", f"{SA}fraud:*"]
    assert serving_access.allows(subjects, f"{SA}rides:eta-model")
    assert serving_access.allows(subjects, f"{SA}fraud:anyone")
    assert not serving_access.allows(subjects, f"{SA}rides:other")
    assert not serving_access.allows(subjects, f"{SA}fraud-x:anyone")
    assert not serving_access.allows(subjects, f"{SA}fraud:")
    assert not serving_access.allows(subjects, "fraud:anyone")
    assert not serving_access.allows([], f"{SA}rides:eta-model")


def test_the_token_is_the_bearer_of_the_authorization_metadata() -> None:
    assert auth.bearer_token([("x-other", "1"), ("authorization", "Bearer abc.def")]) == "abc.def"
    assert auth.bearer_token([("Authorization", b"bearer  t ")]) == "t"


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        (None, "no token"),
        ([("x-other", "1")], "no token"),
        ([("authorization", "Basic abc")], "is not 'Bearer <token>'"),
        ([("authorization", "Bearer ")], "is not 'Bearer <token>'"),
        ([("authorization", "Bearer " + "x" * 20_000)], "at most 16384"),
    ],
)
def test_a_call_without_a_bearer_token_is_unauthenticated(
    metadata: list[tuple[str, str]] | None, message: str
) -> None:
    with pytest.raises(errors.UnauthenticatedError, match=message):
        auth.bearer_token(metadata)


class Reviewer:
    """Accepts the tokens it knows; counts the reviews."""

    def __init__(self, known: dict[str, str]) -> None:
        self.known = known
        self.asked: list[str] = []
        self.gate: asyncio.Event | None = None

    async def review(self, token: str) -> auth.Caller | None:
        self.asked.append(token)
        if self.gate is not None:
            await self.gate.wait()
        name = self.known.get(token)
        return None if name is None else auth.Caller(name)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def _jwt(payload: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(payload)}.signature"


@pytest.mark.asyncio
async def test_an_accepted_token_is_reviewed_once_within_the_ttl() -> None:
    reviewer, clock = Reviewer({"t1": f"{SA}rides:a"}), Clock()
    authenticator = auth.Authenticator(reviewer, ttl=30, clock=clock)
    for _ in range(3):
        assert (await authenticator.authenticate(_bearer("t1"))).username == f"{SA}rides:a"
    assert reviewer.asked == ["t1"]
    clock.now += 31
    await authenticator.authenticate(_bearer("t1"))
    assert reviewer.asked == ["t1", "t1"]


@pytest.mark.asyncio
async def test_a_refused_token_is_not_kept_and_is_unauthenticated() -> None:
    reviewer = Reviewer({})
    authenticator = auth.Authenticator(reviewer)
    for _ in range(2):
        with pytest.raises(errors.UnauthenticatedError, match="does not accept the token"):
            await authenticator.authenticate(_bearer("forged"))
    assert reviewer.asked == ["forged", "forged"]
    assert len(authenticator) == 0


@pytest.mark.asyncio
async def test_the_cache_holds_at_most_max_entries_tokens_dropping_the_least_recent() -> None:
    reviewer = Reviewer({f"t{i}": f"{SA}rides:a{i}" for i in range(3)})
    authenticator = auth.Authenticator(reviewer, max_entries=2)
    for token in ("t0", "t1", "t0", "t2"):
        await authenticator.authenticate(_bearer(token))
    assert len(authenticator) == 2
    await authenticator.authenticate(_bearer("t0"))  # kept: used after t1
    await authenticator.authenticate(_bearer("t1"))  # dropped: reviewed again
    assert reviewer.asked == ["t0", "t1", "t2", "t1"]


@pytest.mark.asyncio
async def test_a_token_is_kept_no_longer_than_its_own_expiry() -> None:
    clock = Clock()
    token = _jwt({"exp": int(clock.now) + 5, "sub": "x"})
    reviewer = Reviewer({token: f"{SA}rides:a"})
    authenticator = auth.Authenticator(reviewer, ttl=60, clock=clock)
    await authenticator.authenticate(_bearer(token))
    clock.now += 6
    await authenticator.authenticate(_bearer(token))
    assert len(reviewer.asked) == 2


@pytest.mark.asyncio
async def test_concurrent_calls_with_one_new_token_share_one_review() -> None:
    reviewer = Reviewer({"t": f"{SA}rides:a"})
    reviewer.gate = asyncio.Event()
    authenticator = auth.Authenticator(reviewer)
    calls = [asyncio.create_task(authenticator.authenticate(_bearer("t"))) for _ in range(5)]
    await asyncio.sleep(0)
    reviewer.gate.set()
    callers = await asyncio.gather(*calls)
    assert {c.username for c in callers} == {f"{SA}rides:a"}
    assert reviewer.asked == ["t"]


@pytest.mark.asyncio
async def test_at_most_max_reviews_reviews_run_at_once() -> None:
    reviewer = Reviewer({})
    reviewer.gate = asyncio.Event()
    authenticator = auth.Authenticator(reviewer, max_reviews=3)
    calls = [
        asyncio.create_task(authenticator.authenticate(_bearer(f"made-up-{i}"))) for i in range(10)
    ]
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(reviewer.asked) == 3
    reviewer.gate.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(o, errors.UnauthenticatedError) for o in outcomes)
    assert len(reviewer.asked) == 10


@pytest.mark.asyncio
async def test_an_unanswered_review_is_unavailable_and_not_kept() -> None:
    class Down:
        async def review(self, token: str) -> auth.Caller | None:
            raise errors.AuthUnavailableError("the Kubernetes API did not review")

    authenticator = auth.Authenticator(Down())
    with pytest.raises(errors.AuthUnavailableError):
        await authenticator.authenticate(_bearer("t"))
    assert len(authenticator) == 0


def test_a_caller_not_listed_is_denied_naming_the_list_to_change() -> None:
    caller = auth.Caller(f"{SA}rides:reader")
    auth.authorize(caller, [f"{SA}rides:*"], "read", "rides/eta")
    with pytest.raises(errors.AccessDeniedError) as refused:
        auth.authorize(caller, [f"{SA}rides:ingest"], "push", "rides/eta")
    assert str(refused.value) == (
        f"{SA}rides:reader may not push FeatureService rides/eta: its spec.access.push "
        f"grants {SA}rides:ingest; add the caller there"
    )
    with pytest.raises(errors.AccessDeniedError, match="grants nobody"):
        auth.authorize(caller, [], "read", "rides/eta")


VIEW = {
    "name": "stats",
    "onlineTable": "t",
    "entities": [{"name": "driver_id", "type": "int64"}],
    "features": [{"name": "trips", "type": "int64"}],
}


def test_a_plan_without_access_grants_its_own_namespace() -> None:
    parsed = plan.parse_plan({"featureService": "s", "namespace": "rides", "featureViews": [VIEW]})
    assert parsed.readers == parsed.pushers == (f"{SA}rides:*",)


def test_a_plan_grants_what_its_access_lists_and_an_empty_list_grants_nobody() -> None:
    parsed = plan.parse_plan(
        {
            "featureService": "s",
            "namespace": "rides",
            "featureViews": [VIEW],
            "access": {"read": ["fraud/*", f"{SA}rides:eta"], "push": []},
        }
    )
    assert parsed.readers == (f"{SA}fraud:*", f"{SA}rides:eta")
    assert parsed.pushers == ()


def test_a_plan_with_a_subject_that_is_no_service_account_does_not_load() -> None:
    with pytest.raises(errors.PlanError, match=r"plan: access\.read: 'everyone' is not a Servic"):
        plan.parse_plan(
            {
                "featureService": "s",
                "namespace": "rides",
                "featureViews": [VIEW],
                "access": {"read": ["everyone"]},
            }
        )


def _service(access: dict[str, Any] | None) -> v1alpha1.FeatureService:
    spec: dict[str, Any] = {"owner": "team", "features": [{"featureView": "stats"}]}
    if access is not None:
        spec["access"] = access
    return v1alpha1.FeatureService.model_validate(
        {"metadata": {"name": "eta", "namespace": "rides"}, "spec": spec}
    )


def test_the_rendered_plan_carries_the_service_access_as_user_names() -> None:
    rendered = serving_plan.render_serving_plan(
        _service({"read": ["fraud/scorer"], "push": ["rides/ingest"]}), []
    )
    assert rendered["access"] == {
        "read": [f"{SA}fraud:scorer"],
        "push": [f"{SA}rides:ingest"],
    }
    defaulted = serving_plan.render_serving_plan(_service(None), [])
    assert defaulted["access"] == {"read": [f"{SA}rides:*"], "push": [f"{SA}rides:*"]}
    only_read = serving_plan.render_serving_plan(_service({"read": []}), [])
    assert only_read["access"] == {"read": [], "push": [f"{SA}rides:*"]}


def test_a_service_whose_access_names_no_service_account_is_refused() -> None:
    with pytest.raises(ValueError, match=r"access\.read\.0"):
        _service({"read": ["anyone at all"]})
