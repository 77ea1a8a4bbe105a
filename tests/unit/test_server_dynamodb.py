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
