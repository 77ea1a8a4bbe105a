"""The DynamoDB store's own reading of BatchGetItem answers, held to botocore's."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import botocore.parsers
import botocore.session

from featurekube_server.stores import dynamodb


def _parsed(response_dict: dict[str, Any], customized: dict[str, Any]) -> dict[str, Any]:
    model = botocore.session.get_session().get_service_model("dynamodb")
    shape = model.operation_model("BatchGetItem").output_shape
    parsed: dict[str, Any] = botocore.parsers.create_parser("json").parse(response_dict, shape)
    parsed.update(customized)
    return parsed


def test_batch_get_item_answers_read_as_botocore_reads_them() -> None:
    vector = base64.b64encode(struct.pack("<2d", 1.5, -2.0)).decode()
    answer = {
        "Responses": {
            "table-a": [
                {
                    "entity_key": {"S": "driver_id:i:1"},
                    "_event_time": {"N": "1800000000000000"},
                    "rate": {"N": "0.1"},
                    "nan": {"S": "NaN"},
                    "ok": {"BOOL": True},
                    "gone": {"NULL": True},
                    "embedding": {"B": vector},
                    "name": {"S": "B"},
                }
            ],
            "table-b": [],
        },
        "UnprocessedKeys": {
            "table-a": {
                "Keys": [{"entity_key": {"S": "driver_id:i:2"}}],
                "ProjectionExpression": "#k, #e",
                "ExpressionAttributeNames": {"#k": "entity_key", "#e": "_event_time"},
            }
        },
    }
    body = json.dumps(answer).encode()

    def response() -> dict[str, Any]:
        return {"status_code": 200, "headers": {"x-amzn-requestid": "r"}, "body": body}

    expected = _parsed(response(), {})
    read, customized = response(), {}
    dynamodb._parse_batch_get_item(read, customized)

    assert _parsed(read, customized) == expected
    assert expected["Responses"]["table-a"][0]["embedding"]["B"] == struct.pack("<2d", 1.5, -2.0)


def test_error_answers_are_left_to_botocore() -> None:
    body = json.dumps({"__type": "ResourceNotFoundException", "message": "no"}).encode()
    read: dict[str, Any] = {"status_code": 400, "headers": {}, "body": body}
    customized: dict[str, Any] = {}
    dynamodb._parse_batch_get_item(read, customized)
    assert read["body"] == body
    assert customized == {}


def test_reads_of_several_tables_share_calls_of_at_most_100_keys() -> None:
    from featurekube_server.stores import base

    reads = [
        base.TableRead("stats", [f"driver_id:i:{i}" for i in range(150)], ["trips", "rating"]),
        base.TableRead("empty", [], ["x"]),
        base.TableRead("profile", [f"driver_id:i:{i}" for i in range(30)], []),
        base.TableRead("live", [f"driver_id:i:{i}" for i in range(21)], ["speed"]),
    ]

    calls = dynamodb.batch_requests(reads)

    assert [{t: len(r["Keys"]) for t, r in call.items()} for call in calls] == [
        {"stats": 100},
        {"stats": 50, "profile": 30, "live": 20},
        {"live": 1},
    ]
    sent = [
        (table, key["entity_key"]["S"])
        for call in calls
        for table, request in call.items()
        for key in request["Keys"]
    ]
    assert sorted(sent) == sorted((r.table, k) for r in reads for k in r.keys)
    stats = calls[1]["stats"]
    assert stats["ProjectionExpression"] == "#k, #e, #l, #p, #a0, #a1"
    assert stats["ExpressionAttributeNames"]["#l"] == "latest_event_time"
    assert stats["ExpressionAttributeNames"]["#a1"] == "rating"
    assert calls[1]["profile"]["ProjectionExpression"] == "#k, #e, #l, #p"
    assert dynamodb.batch_requests([base.TableRead("t", [], ["x"])]) == []


def test_a_read_of_whole_items_sends_no_projection() -> None:
    from featurekube_server.stores import base

    (call,) = dynamodb.batch_requests(
        [base.TableRead("whole", ["k1"], None), base.TableRead("some", ["k1"], ["x"])]
    )
    assert call["whole"] == {"Keys": [{"entity_key": {"S": "k1"}}]}
    assert call["some"]["ProjectionExpression"] == "#k, #e, #l, #p, #a0"
