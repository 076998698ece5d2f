"""Fixtures for the store conformance suite: every test runs on every implementation.

etcd is a real server (the system binary, lab/etcd.py), one per test
session, started on first use; each test starts from an empty keyspace (every
key deleted, every lease revoked), so revisions keep growing from test to test
and tests compare revisions relative to ``current_revision()``.  A missing etcd
binary is an error, not a skip: the multi-host store must not go untested.
"""

from __future__ import annotations

import time

import pytest

from pynet.store.etcd import EtcdStore
from pynet.store.memory import MemoryStore
from pynet.store.sqlite import SqliteStore
from pynet.lab.etcd import EtcdProcess

IMPLEMENTATIONS = ["memory", "sqlite", "etcd"]
ALL_KEYS = {"key": "AA==", "range_end": "AA=="}  # base64 of "\0" twice: the whole keyspace


class FakeClock:
    """A monotonic clock that moves only when told to (for MemoryStore leases)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory):
    with EtcdProcess(tmp_path_factory.mktemp("etcd")) as etcd:
        yield etcd


def wipe(etcd: EtcdProcess) -> None:
    for lease in etcd.post("lease/leases", {}).get("leases", []):
        try:
            etcd.post("lease/revoke", {"ID": int(lease["ID"])})
        except Exception:  # expired meanwhile
            pass
    etcd.post("kv/deleterange", ALL_KEYS)


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request) -> str:
    return request.param


@pytest.fixture
def make_store(impl, request, tmp_path):
    """A factory ``make_store(**kwargs)`` for fresh stores of one implementation; all closed
    afterwards.  Memory and sqlite take ``history=``, memory ``clock=``; etcd stores of one
    test share one (wiped) keyspace."""
    opened = []
    etcd = None
    if impl == "etcd":
        etcd = request.getfixturevalue("etcd_server")
        wipe(etcd)

    def make(**kwargs):
        if impl == "memory":
            store = MemoryStore(**kwargs)
        elif impl == "sqlite":
            store = SqliteStore(str(tmp_path / f"store{len(opened)}.db"), **kwargs)
        else:
            store = EtcdStore([etcd.url], **kwargs)
        opened.append(store)
        return store

    make.impl = impl
    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store):
    return make_store()


@pytest.fixture
def make_compacting_store(make_store, request):
    """``make(keep)`` -> ``(store, compact)``: after writing, ``compact()`` makes the store
    forget every event but the newest ``keep``.  Memory and sqlite trim as they go
    (``history=keep``, compact() does nothing); etcd compacts when told."""

    def make(keep: int):
        if make_store.impl != "etcd":
            return make_store(history=keep), lambda: None
        store = make_store()
        etcd = request.getfixturevalue("etcd_server")
        return store, lambda: etcd.compact(store.current_revision() - keep + 1)

    return make


class LeaseEnv:
    """A store with leases and a way to let time pass: a fake clock for memory (instant),
    real sleeping for etcd (so etcd tests use TTLs of 1 s, etcd's minimum here)."""

    def __init__(self, store, advance) -> None:
        self.store = store
        self.advance = advance


@pytest.fixture
def leases(make_store) -> LeaseEnv:
    if make_store.impl == "sqlite":
        pytest.skip("sqlite has no leases (supports_leases = False, tested in test_sqlite.py)")
    if make_store.impl == "memory":
        clock = FakeClock()
        return LeaseEnv(make_store(clock=clock), clock.advance)
    return LeaseEnv(make_store(), time.sleep)


# -- a secured etcd: TLS, client certificates, RBAC (lab/pki.py, lab/etcd.py) -------------

SECURE_TOKEN_TTL = 2  # seconds a token may sit unused (etcd --auth-token-ttl): renewal is tested


class SecureEtcd:
    """A TLS etcd with ``--client-cert-auth`` and auth enabled: user ``pynet`` may read and write
    pynet's prefix only, user ``other`` a different prefix; the files a client needs, good and bad."""

    PASSWORD = "pynet-secret"

    def __init__(self, workdir) -> None:
        from pynet.lab.etcd import EtcdTls
        from pynet.lab.pki import Pki
        from pynet.store.keys import ROOT

        pki = Pki(workdir / "pki")
        self.ca = pki.ca("cluster")
        self.server = pki.issue(self.ca, "pynet-etcd-server", ips=["127.0.0.1"])
        self.client = pki.issue(self.ca, "pynet")
        self.admin = pki.issue(self.ca, "admin")
        self.with_cn = pki.issue(self.ca, "pynet-cn", common_name=True)
        self.rogue_ca = pki.ca("rogue")
        self.rogue = pki.issue(self.rogue_ca, "intruder")
        self.password_file = workdir / "etcd-password"
        self.password_file.write_text(self.PASSWORD + "\n")
        self.prefix = ROOT + "/"
        self.etcd = EtcdProcess(workdir / "etcd", tls=EtcdTls(self.ca.cert, self.server, self.admin),
                                auth_token_ttl=SECURE_TOKEN_TTL)

    def start(self) -> "SecureEtcd":
        self.etcd.start()
        self.etcd.enable_auth("root-secret", {"pynet": (self.PASSWORD, self.prefix),
                                              "other": ("other-secret", "/other/")})
        return self

    @property
    def url(self) -> str:
        return self.etcd.url

    def security(self, **changes):
        """The EtcdSecurity of a correctly configured pynet, with ``changes``."""
        from dataclasses import replace

        from pynet.store.etcd_auth import EtcdSecurity

        good = EtcdSecurity(ca=str(self.ca.cert), cert=str(self.client.cert), key=str(self.client.key),
                            user="pynet", password=self.PASSWORD)
        return replace(good, **changes)

    def wipe(self) -> None:
        self.etcd.post("kv/deleterange", {"key": "AA==", "range_end": "AA=="})


@pytest.fixture(scope="session")
def secure_etcd(tmp_path_factory):
    secure = SecureEtcd(tmp_path_factory.mktemp("secure-etcd"))
    secure.start()
    try:
        yield secure
    finally:
        secure.etcd.stop()
