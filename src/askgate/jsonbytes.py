"""JSON written as bytes: orjson, or the standard library for what orjson refuses
(a lone surrogate, a non-string key), which it writes ASCII-escaped."""

import json
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """Compact JSON, UTF-8."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":")).encode()
