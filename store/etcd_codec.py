"""Encoding between pynet's keys/values and etcd's v3 JSON gateway (base64 keys and values,
64-bit numbers as strings); shared by the store and its watch stream."""

from __future__ import annotations

import base64

from pynet.store._common import decode, encode
from pynet.store.base import Entry, Event

NO_KEY = b"\0"  # as a range end: "every key from here on"; as a key: the first key


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")


def unb64(text: str) -> str:
    return base64.b64decode(text).decode(errors="replace")  # a foreign value need not be UTF-8


def range_end(prefix: str) -> bytes:
    """The first key after every key starting with ``prefix`` (on UTF-8 bytes, as etcd orders)."""
    end = bytearray(prefix.encode())
    while end and end[-1] == 0xFF:
        end.pop()
    if not end:
        return NO_KEY
    end[-1] += 1
    return bytes(end)


def put(key: str, value: dict, lease: int) -> dict:
    put = {"key": b64(key), "value": b64(encode(value))}
    if lease:
        put["lease"] = lease
    return {"request_put": put}


def entry(kv: dict) -> Entry:
    return Entry(unb64(kv["key"]), decode(unb64(kv.get("value", ""))), int(kv["mod_revision"]))


def event(event: dict) -> Event:
    kv = event["kv"]
    value = None if event.get("type") == "DELETE" else decode(unb64(kv.get("value", "")))
    return Event(unb64(kv["key"]), value, int(kv["mod_revision"]))


def new_revision(result: dict) -> int | None:
    return int(result["header"]["revision"]) if result.get("succeeded") else None
