"""BatchWriteItem bodies encoded by the writer's client, against botocore's serializer,
without a store: each request is answered before it leaves the client."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config

from featurekube.writer import bodies

ITEM: dict[str, Any] = {
    "entity_key": {"S": "driver_id:i:7/zone:s:SF%2FN ü"},
    "speed": {"N": "0.1"},
    "path": {"B": struct.pack("<2d", 1.5, float("nan"))},
    "online": {"BOOL": False},
    "nested": {"M": {"x": {"L": [{"N": "1"}, {"NULL": True}]}}},
}


class _Answers:
    """Answers each request with the next canned body, and keeps what was sent."""

    def __init__(self, *answers: dict[str, Any]) -> None:
        self.answers = list(answers)
        self.sent: list[AWSPreparedRequest] = []

    def __call__(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        self.sent.append(request)
        body = json.dumps(self.answers.pop(0) if self.answers else {}).encode()
        headers = {"x-amz-crc32": str(zlib.crc32(body))}
        response = AWSResponse(request.url, 200, headers, _Raw(body))
        response._content = body  # type: ignore[attr-defined]
        return response


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


def _client(answers: _Answers, *, install: bool, validate: bool = False) -> Any:
    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="key",
        aws_secret_access_key="secret",
        config=Config(parameter_validation=validate),
    )
    client.meta.events.register("before-send", answers)
    if install:
        bodies.install(client)
    return client


def _sent_json(request: AWSPreparedRequest) -> Any:
    assert isinstance(request.body, bytes)
    assert int(request.headers["Content-Length"]) == len(request.body)
    return json.loads(request.body)


@pytest.mark.parametrize("validate", [False, True])
def test_a_body_encoded_by_the_client_equals_botocores(validate: bool) -> None:
    plain, fast = _Answers(), _Answers()
    other = {**ITEM, "entity_key": {"S": "k2"}}
    write = {"live": [{"PutRequest": {"Item": ITEM}}, {"PutRequest": {"Item": other}}]}
    _client(plain, install=False).batch_write_item(RequestItems=write)
    client = _client(fast, install=True, validate=validate)
    client.batch_write_item(RequestItems=bodies.RequestItems(write))

    assert _sent_json(fast.sent[0]) == _sent_json(plain.sent[0])
    assert b", " not in fast.sent[0].body  # json.dumps's compact body, not botocore's
    blob = _sent_json(fast.sent[0])["RequestItems"]["live"][0]["PutRequest"]["Item"]["path"]
    assert base64.b64decode(blob["B"]) == ITEM["path"]["B"]
    for header in ("X-Amz-Target", "Content-Type"):
        assert fast.sent[0].headers[header] == plain.sent[0].headers[header]
    # The signature covers the body sent, not the one botocore serialized.
    assert "Signature=" in str(fast.sent[0].headers["Authorization"])


def test_other_requests_and_plain_dicts_go_through_botocore() -> None:
    answers = _Answers()
    client = _client(answers, install=True)
    client.batch_write_item(RequestItems={"live": [{"PutRequest": {"Item": ITEM}}]})
    client.get_item(TableName="live", Key={"entity_key": {"S": "k"}})

    sent = [_sent_json(request) for request in answers.sent]
    assert sent[0]["RequestItems"]["live"][0]["PutRequest"]["Item"]["speed"] == {"N": "0.1"}
    assert b", " in answers.sent[0].body  # botocore's separators, not the compact ones
    assert sent[1] == {"TableName": "live", "Key": {"entity_key": {"S": "k"}}}


def test_unprocessed_items_parsed_back_encode_as_they_were_sent() -> None:
    first = {"live": [{"PutRequest": {"Item": ITEM}}]}
    wire = json.loads(json.dumps(first, default=lambda b: base64.b64encode(b).decode()))
    answers = _Answers({"UnprocessedItems": wire})
    client = _client(answers, install=True)

    answer = client.batch_write_item(RequestItems=bodies.RequestItems(first))
    again = answer["UnprocessedItems"]
    assert again["live"][0]["PutRequest"]["Item"]["path"]["B"] == ITEM["path"]["B"]
    client.batch_write_item(RequestItems=bodies.RequestItems(again))

    assert _sent_json(answers.sent[1]) == _sent_json(answers.sent[0])


def test_a_value_that_is_not_an_attribute_fails_the_request() -> None:
    client = _client(_Answers(), install=True)
    bad = {"entity_key": {"S": "k"}, "bad": {"N": object()}}
    requests = [{"PutRequest": {"Item": item}} for item in (ITEM, bad)]
    with pytest.raises(TypeError, match="not a DynamoDB attribute value"):
        client.batch_write_item(RequestItems=bodies.RequestItems({"live": requests}))


def test_a_client_that_is_not_botocores_is_left_alone() -> None:
    assert bodies.install(object()) is False
    assert bodies.install(_client(_Answers(), install=False)) is True
