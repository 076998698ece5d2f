"""Plain data the IPAM service takes and returns; no wire casing, no Flask.

plugin/ maps these to Docker's RequestPoolResponse & co.  PoolRecord is also
the stored form of one pool inside the space's pools document (store/keys.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PoolResult:
    """What RequestPool answers: the opaque id, the canonical CIDR, extra data."""

    pool_id: str
    pool: str
    data: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PoolRef:
    """A parsed PoolID: address space, canonical pool CIDR, sub-pool CIDR or ''."""

    space: str
    pool: str
    sub_pool: str = ""


@dataclass(frozen=True)
class PoolRecord:
    """One held pool as stored under its CIDR in the space's pools document."""

    pool: str
    sub_pool: str = ""
    v6: bool = False
    options: dict = field(default_factory=dict)
    # Multi-host only: the hosts whose networks use this pool (an overlay's copies
    # share one pool), and its gateway, reserved once for all of them.
    holders: tuple[str, ...] = ()
    gateway: str = ""

    def to_json(self) -> dict:
        doc = {"sub_pool": self.sub_pool, "v6": self.v6, "options": dict(self.options)}
        if self.holders:
            doc["holders"] = list(self.holders)
        if self.gateway:
            doc["gateway"] = self.gateway
        return doc

    @classmethod
    def from_json(cls, pool: str, doc: dict) -> "PoolRecord":
        return cls(pool, doc.get("sub_pool") or "", bool(doc.get("v6")), dict(doc.get("options") or {}),
                   tuple(doc.get("holders") or ()), doc.get("gateway") or "")
