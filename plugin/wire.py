"""Wire <-> dataclass mapping, in exactly one place.

Docker's Go structs use PascalCase field names (``NetworkID``, ``SrcName``);
pynet's dataclasses use snake_case and name the wire key in the field's
metadata (``wire("NetworkID")``).  ``decode`` builds a request dataclass from a
JSON object and checks every field's type, so a handler never sees a wrong
type; ``encode`` turns a response dataclass back into the wire object, leaving
out fields that are None.

Go encodes nil maps and slices as JSON ``null``: a null (or missing) field gets
the dataclass default (``{}``/``[]``/``""``), never None.

A field may name a parser (``wire("NetworkID", parse=docker_id)``, pynet/parsing.py): it runs on the
value after the type check, so an ID with a '/', a newline or 10,000 characters is refused here, by
name, before any service, store key or kernel name sees it.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import MISSING, field, fields, is_dataclass

from pynet.errors import BadRequest

_TYPE_NAMES = {str: "a string", bool: "a boolean", int: "an integer", dict: "an object", list: "a list"}


def wire(name: str, default=MISSING, default_factory=MISSING, required: bool = False, parse=None):
    """A dataclass field carried on the wire under ``name``; ``parse(value, field)`` checks a present value."""
    meta = {"wire": name, "required": required, "parse": parse}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    if default is not MISSING:
        return field(default=default, metadata=meta)
    return field(metadata=meta)


def _origin(tp):
    origin = typing.get_origin(tp)
    if origin is typing.Union or str(origin) == "types.UnionType":
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _origin(args[0])
    return origin or tp


def _check(value, tp, path: str):
    base = _origin(tp)
    if is_dataclass(base):
        if not isinstance(value, dict):
            raise BadRequest(f"{path} must be an object, got {_show(value)}")
        return decode(base, value, prefix=f"{path}.")
    if base is list:
        if not isinstance(value, list):
            raise BadRequest(f"{path} must be a list, got {_show(value)}")
        (item_tp,) = typing.get_args(tp) or (object,)
        if is_dataclass(_origin(item_tp)):
            return [_check(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
        return value
    if base is int and isinstance(value, bool):
        raise BadRequest(f"{path} must be an integer, got {_show(value)}")
    if base in _TYPE_NAMES and not isinstance(value, base):
        raise BadRequest(f"{path} must be {_TYPE_NAMES[base]}, got {_show(value)}")
    return value


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def decode(cls, body: dict, prefix: str = ""):
    """Build ``cls`` from the JSON object ``body``; BadRequest names the first bad field."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        name = f.metadata.get("wire", f.name)
        value = body.get(name)
        if value is None:
            if f.metadata.get("required"):
                raise BadRequest(f"{prefix}{name} is required")
            continue  # dataclass default applies
        value = _check(value, hints[f.name], prefix + name)
        parse = f.metadata.get("parse")
        kwargs[f.name] = parse(value, prefix + name) if parse else value
    return cls(**kwargs)


def encode(obj) -> dict:
    """The wire object for the response dataclass ``obj`` (None fields left out)."""
    out = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        if is_dataclass(value):
            value = encode(value)
        elif isinstance(value, list):
            value = [encode(v) if is_dataclass(v) else v for v in value]
        out[f.metadata.get("wire", f.name)] = value
    return out


__all__ = ["wire", "decode", "encode", "dataclasses"]
