"""EtcdStore against an etcd with TLS, client-certificate auth and RBAC (user ``pynet``, its prefix only).

The server is tests/store/conftest.py's ``secure_etcd``: every request must carry a client certificate
of the cluster CA and a token of a user; a token unused for SECURE_TOKEN_TTL seconds stops working,
and every token stops working when etcd restarts.  Keys are under pynet's prefix (keys.ROOT), the only
place user ``pynet`` may read or write.
"""

from __future__ import annotations

import threading
import time

import pytest

from pynet.errors import PynetError
from pynet.store.etcd import EtcdStore
from pynet.store.etcd_auth import AuthFailed, EtcdSecurity
from pynet.lab.wait import wait_until
from tests.store.conftest import SECURE_TOKEN_TTL

P = "/pynet/v1/test/"


@pytest.fixture
def secure(secure_etcd):
    secure_etcd.wipe()
    return secure_etcd


@pytest.fixture
def make(secure):
    opened = []

    def make(**changes) -> EtcdStore:
        store = EtcdStore([secure.url], timeout=2.0, security=secure.security(**changes))
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def test_crud_and_cas_over_tls_with_a_token(make):
    store = make()
    rev = store.create(P + "a", {"n": 1})
    assert rev is not None and store.create(P + "a", {"n": 2}) is None
    new = store.cas(P + "a", {"n": 3}, rev)
    assert new > rev and store.cas(P + "a", {"n": 4}, rev) is None
    assert store.get(P + "a").value == {"n": 3}
    assert [e.key for e in store.list(P)] == [P + "a"]
    assert store.current_revision() >= new
    assert store.delete(P + "a", new) and store.get(P + "a") is None
    store.create(P + "b", {})
    assert store.delete(P + "b") and not store.delete(P + "b")  # kv/deleterange


def test_leases_need_no_more_than_the_prefix(make):
    """etcd 3.4: a user without any lease permission grants, refreshes and revokes leases; a revoke
    deletes the lease's keys, which needs write permission on them (they are in the prefix)."""
    store = make()
    lease = store.grant_lease(5)
    store.create(P + "leased", {}, lease=lease)
    assert store.refresh_lease(lease)
    store.revoke_lease(lease)
    assert store.get(P + "leased") is None
    assert not store.refresh_lease(lease)


def test_rbac_keeps_pynet_to_its_prefix(make):
    store = make()
    with pytest.raises(PynetError, match="permission denied"):
        store.get("/other/secret")
    with pytest.raises(PynetError, match="permission denied"):
        store.create("/elsewhere", {})


def test_a_bad_password_or_unknown_user_is_refused_by_name(make):
    with pytest.raises(AuthFailed, match="refused user 'pynet'.*authentication failed"):
        make(password="wrong").get(P + "x")
    with pytest.raises(AuthFailed, match="refused user 'nobody'"):
        make(user="nobody").get(P + "x")


def test_no_credentials_no_access(secure):
    store = EtcdStore([secure.url], timeout=2.0, security=EtcdSecurity(
        ca=str(secure.ca.cert), cert=str(secure.client.cert), key=str(secure.client.key)))
    with pytest.raises(PynetError, match="user name is empty"):
        store.get(P + "x")
    store.close()


def test_an_expired_token_is_renewed_once_and_the_request_resent(make):
    store = make()
    store.create(P + "k", {"n": 1})
    first = store._auth._token
    time.sleep(SECURE_TOKEN_TTL + 1.5)  # unused for longer than its TTL: etcd forgets it
    rev = store.create(P + "k2", {"n": 2})  # a write, refused unapplied, then resent
    assert rev is not None and store.get(P + "k2").value == {"n": 2}
    assert store._auth._token not in (None, first)


def test_threads_failing_together_authenticate_once(make):
    store = make()
    store.get(P + "x")
    time.sleep(SECURE_TOKEN_TTL + 1.5)
    tokens, errors = set(), []

    def read():
        try:
            store.get(P + "x")
            tokens.add(store._auth._token)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(tokens) == 1


def test_watch_carries_tls_and_token_through_expiry_and_restart(make, secure):
    """The watch stream's own session has the client certificate and the token; a token that
    expires while the stream is open does not end it (etcd checks at create); after an etcd
    restart (every simple token gone) the re-watch is refused, re-authenticates, and resumes."""
    store, writer = make(), make()
    start = writer.create(P + "w0", {})
    seen, ended = [], []

    def watch(from_revision):
        try:
            for event in store.watch(P, from_revision, timeout=30):
                seen.append(event)
        except Exception as err:  # noqa: BLE001 - the stream's end, checked below
            ended.append(err)

    thread = threading.Thread(target=watch, args=(start,), daemon=True)
    thread.start()
    assert wait_until(lambda: len(seen) == 1, 5), "the first event"
    time.sleep(SECURE_TOKEN_TTL + 1.5)  # the watcher's token expires while its stream stays open
    writer.create(P + "w1", {})  # the writer renews its own token
    assert wait_until(lambda: len(seen) == 2, 5), "an event after the token expired"

    secure.etcd.restart()  # the stream breaks; every token is gone
    thread.join(10)
    assert ended and "etcd" in str(ended[0])
    token_before = store._auth._token
    last = seen[-1].revision
    ended.clear()
    thread = threading.Thread(target=watch, args=(last + 1,), daemon=True)
    thread.start()
    time.sleep(0.5)
    writer.create(P + "w2", {})
    assert wait_until(lambda: len(seen) == 3, 10), f"no event after the restart (ended: {ended})"
    assert [e.key for e in seen] == [P + "w0", P + "w1", P + "w2"]
    assert store._auth._token != token_before
    store.close()
    thread.join(5)


def test_a_watch_outside_the_prefix_is_denied_not_compacted(make):
    store = make()
    with pytest.raises(PynetError, match="permission denied") as caught:
        list(store.watch("/other/", store.current_revision(), timeout=2))
    assert "compact" not in str(caught.value)


def test_a_watch_created_with_a_stale_token_renews_it(make):
    """etcd 3.4 cancels a watch created with a token it no longer accepts ("permission denied");
    the store authenticates again and creates the watch anew instead of reporting a compaction.
    (Through the public watch() the revision check before the stream renews the token first, so
    the stream is opened here directly, as a token expiring between the two would leave it.)"""
    store, writer = make(), make()
    start = writer.create(P + "s", {})
    store.get(P + "s")
    store._auth._token = store._auth._token + "x"  # a token etcd does not know
    events = list(store._follow(P, start, 2.0, 1.0))
    assert [e.key for e in events] == [P + "s"]
    assert not store._auth._token.endswith("x")
