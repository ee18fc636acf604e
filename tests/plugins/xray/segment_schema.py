"""X-Ray's segment-document rules as a JSON Schema, written from AWS's developer guide
("AWS X-Ray segment documents", xray-api-segmentdocuments) — not from gatescope's encoder.

Rules encoded (doc wording in quotes):
- required: name, id, start_time, and "either an end_time or in_progress"; trace_id for segments
  and for subsegments "sent separately", which also need `type: "subsegment"` and `parent_id`;
- name: "up to 200 characters ... Unicode letters, numbers, and whitespace, and the following
  symbols: _, ., :, /, %, &, #, =, +, \\, -, @";
- id / parent_id / exception id: "in 16 hexadecimal digits";
- trace_id: "1-" + "8 hexadecimal digits" of epoch time + "-" + "24 hexadecimal digits";
- start_time / end_time: numbers (float epoch seconds); in_progress/error/throttle/fault: booleans;
- "Values must be strings (up to 250 characters) unless noted otherwise";
- namespace: "aws" or "remote"; origin: the three listed resource types;
- http.request: method, url, user_agent, client_ip (strings), x_forwarded_for (segments only) and
  traced (subsegments only) booleans; http.response: status, content_length numbers;
- annotations: "string, number, or Boolean values (no objects or arrays)", keys "alphanumeric ...
  Underscore is allowed. Other symbols and whitespace are not allowed", "up to 50 annotations";
- metadata: values of any type; keys "starting with AWS. are reserved";
- cause: "either a 16 character exception ID or an object" with working_directory, paths,
  exceptions (exception: only `id` required; remote boolean; truncated/skipped integers; stack).
The 64 kB document limit and the 30-day trace-id age are checked separately (not JSON Schema).
"""

from __future__ import annotations

from typing import Any

HEX16 = {"type": "string", "pattern": r"^[0-9a-f]{16}\Z"}
TEXT = {"type": "string", "maxLength": 250}

STACK_FRAME = {
    "type": "object",
    "properties": {"path": TEXT, "line": {"type": "integer"}, "label": TEXT},
    "additionalProperties": False,
}
EXCEPTION = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": HEX16, "message": TEXT, "type": TEXT, "remote": {"type": "boolean"},
        "truncated": {"type": "integer"}, "skipped": {"type": "integer"}, "cause": HEX16,
        "stack": {"type": "array", "items": STACK_FRAME},
    },
    "additionalProperties": False,
}
CAUSE = {
    "oneOf": [
        HEX16,
        {
            "type": "object",
            "properties": {
                "working_directory": TEXT,
                "paths": {"type": "array", "items": TEXT},
                "exceptions": {"type": "array", "items": EXCEPTION},
            },
            "additionalProperties": False,
        },
    ]
}
HTTP = {
    "type": "object",
    "properties": {
        "request": {
            "type": "object",
            "properties": {
                "method": TEXT, "url": TEXT, "user_agent": TEXT, "client_ip": TEXT,
                "x_forwarded_for": {"type": "boolean"}, "traced": {"type": "boolean"},
            },
            "additionalProperties": False,
        },
        "response": {
            "type": "object",
            "properties": {"status": {"type": "number"}, "content_length": {"type": "number"}},
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}

SEGMENT_DOCUMENT: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["name", "id", "start_time"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200,
                 "pattern": r"^[\w\s.:/%&#=+\\@-]+\Z"},
        "id": HEX16,
        "trace_id": {"type": "string", "pattern": r"^1-[0-9a-f]{8}-[0-9a-f]{24}\Z"},
        "start_time": {"type": "number"},
        "end_time": {"type": "number"},
        "in_progress": {"type": "boolean"},
        "parent_id": HEX16,
        "type": {"const": "subsegment"},
        "namespace": {"enum": ["aws", "remote"]},
        "service": {"type": "object", "properties": {"version": TEXT}, "additionalProperties": False},
        "user": TEXT,
        "origin": {"enum": ["AWS::EC2::Instance", "AWS::ECS::Container",
                            "AWS::ElasticBeanstalk::Environment"]},
        "http": HTTP,
        "aws": {"type": "object"},
        "error": {"type": "boolean"},
        "throttle": {"type": "boolean"},
        "fault": {"type": "boolean"},
        "cause": CAUSE,
        "annotations": {
            "type": "object",
            "maxProperties": 50,
            "propertyNames": {"pattern": r"^[A-Za-z0-9_]+\Z"},
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        },
        "metadata": {"type": "object", "propertyNames": {"not": {"pattern": r"^AWS\."}}},
        "subsegments": {"type": "array"},
        "precursor_ids": {"type": "array", "items": HEX16},
    },
    "additionalProperties": False,
    "oneOf": [{"required": ["end_time"]}, {"required": ["in_progress"]}],
    "if": {"required": ["type"]},
    "then": {  # a subsegment sent on its own
        "required": ["trace_id", "parent_id"],
        "not": {"anyOf": [{"required": ["service"]}, {"required": ["origin"]},
                          {"required": ["user"]}]},
        "properties": {"http": {"properties": {"request": {
            "not": {"required": ["x_forwarded_for"]}}}}},
    },
    "else": {  # a segment
        "required": ["trace_id"],
        "not": {"anyOf": [{"required": ["namespace"]}, {"required": ["precursor_ids"]}]},
        "properties": {"http": {"properties": {"request": {"not": {"required": ["traced"]}}}}},
    },
}
MAX_DOCUMENT_BYTES = 64 * 1000  # "can be up to 64 kB"
MAX_TRACE_AGE_SECONDS = 30 * 24 * 3600  # X-Ray keeps (and accepts) traces for 30 days


def problems(text: str, now: float) -> list[str]:
    """Every rule a JSON segment document breaks (empty when X-Ray's rules are met)."""
    import json

    import jsonschema

    found: list[str] = []
    if len(text.encode()) > MAX_DOCUMENT_BYTES:
        found.append(f"document is {len(text.encode())} bytes, over 64 kB")
    document = json.loads(text)
    validator = jsonschema.Draft202012Validator(SEGMENT_DOCUMENT)
    found.extend(f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document))
    trace_id = document.get("trace_id")
    if isinstance(trace_id, str) and len(trace_id) == 35:
        epoch = int(trace_id[2:10], 16)
        if not now - MAX_TRACE_AGE_SECONDS <= epoch <= now + 300:
            found.append(f"trace id time {epoch} is not within 30 days of now ({now:.0f})")
    if document.get("end_time", document.get("start_time", 0)) < document.get("start_time", 0):
        found.append("end_time is before start_time")
    return found
