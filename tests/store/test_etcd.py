"""EtcdStore specifics: endpoints, failover, timeouts, and watches across an etcd restart."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from pynet.errors import Unavailable
from pynet.store import open_cluster_store
from pynet.store.base import Compacted, Event
from pynet.store.etcd import EtcdStore, parse_endpoint, parse_endpoints
from pynet.store.etcd_watch import watch_item
from pynet.lab.etcd import EtcdProcess, free_port
from pynet.lab.wait import wait_until


@contextlib.contextmanager
def silent_endpoint():
    """A URL whose port accepts connections (the kernel's backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def etcd(etcd_server):
    from tests.store.conftest import wipe

    wipe(etcd_server)
    return etcd_server


# -- endpoints -------------------------------------------------------------------------


@pytest.mark.parametrize("url, parsed", [
    ("http://127.0.0.1:2379", ("http", "127.0.0.1", 2379)),
    ("http://etcd.example:12379/", ("http", "etcd.example", 12379)),
    ("https://10.0.0.1", ("https", "10.0.0.1", 2379)),
    (" http://[fd00::1]:2379 ", ("http", "fd00::1", 2379)),
])
def test_parse_endpoint(url, parsed):
    assert parse_endpoint(url) == parsed


@pytest.mark.parametrize("junk", ["127.0.0.1:2379", "etcd", "ftp://h:1", "http://", "http://h:port",
                                  "http://h:99999", "http://u:p@h:1", "http://h:1/v3", "http://h:1?x=1"])
def test_parse_endpoint_rejects_junk(junk):
    with pytest.raises(ValueError, match="bad etcd endpoint"):
        parse_endpoint(junk)


def test_endpoint_lists():
    assert parse_endpoints("http://a:1, http://[fd00::2]:2,") == ["http://a:1", "http://[fd00::2]:2"]
    with pytest.raises(ValueError, match="no etcd endpoint"):
        parse_endpoints(" , ")
    store = open_cluster_store("http://a:1,http://b:2", timeout=0.5)
    assert isinstance(store, EtcdStore) and store.urls == ["http://a:1", "http://b:2"]


# -- unreachable, failover ---------------------------------------------------------------


def test_refused_endpoint_raises_unavailable_at_once():
    url = f"http://127.0.0.1:{free_port()}"
    store = EtcdStore([url], timeout=1.0)
    began = time.monotonic()
    with pytest.raises(Unavailable, match=f"etcd unreachable at {url}: .*refused"):
        store.get("/k")
    with pytest.raises(Unavailable):
        store.create("/k", {})
    with pytest.raises(Unavailable):
        store.watch("/k", 1)
    assert time.monotonic() - began < 1.0


def test_silent_endpoint_times_out_instead_of_hanging():
    with silent_endpoint() as url:
        store = EtcdStore([url], timeout=0.5)
        began = time.monotonic()
        with pytest.raises(Unavailable, match="no answer within 0.5 s"):
            store.current_revision()
        # A write that may have arrived is not resent elsewhere: the caller must re-read.
        with pytest.raises(Unavailable, match="may or may not have been applied"):
            store.create("/k", {})
        assert time.monotonic() - began < 2.5


def test_failover_to_the_next_endpoint_and_stay_there(etcd):
    dead = f"http://127.0.0.1:{free_port()}"
    store = EtcdStore([dead, etcd.url], timeout=1.0)
    rev = store.create("/f/a", {"n": 1})  # refused: never sent, so safe to send to the next
    assert store.get("/f/a").revision == rev
    with silent_endpoint() as silent:
        store = EtcdStore([silent, etcd.url], timeout=0.5)
        began = time.monotonic()
        assert store.get("/f/a").value == {"n": 1}
        first = time.monotonic() - began
        began = time.monotonic()
        assert [e.key for e in store.list("/f/")] == ["/f/a"]
        assert first >= 0.5 and time.monotonic() - began < 0.3  # remembered the live one


def test_all_endpoints_named_when_none_answers():
    urls = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    with pytest.raises(Unavailable) as caught:
        EtcdStore(urls, timeout=0.5).list("/")
    assert all(url in str(caught.value) for url in urls)


# -- watch -----------------------------------------------------------------------------


def test_watch_across_an_etcd_restart(tmp_path):
    with EtcdProcess(tmp_path / "etcd") as own:
        store = EtcdStore([own.url], timeout=1.0)
        first = store.create("/w/a", {})
        seen, ended = [], []

        def watcher():
            try:
                for event in store.watch("/w/", first, timeout=10):
                    seen.append(event)
                ended.append("timeout")
            except Unavailable as err:
                ended.append(err)

        thread = threading.Thread(target=watcher, daemon=True)
        thread.start()
        assert wait_until(lambda: seen, 5.0, 0.02), "the first event never arrived"
        own.restart()
        thread.join(5)
        assert ended and isinstance(ended[0], Unavailable), f"watch did not end with Unavailable: {ended}"
        later = store.create("/w/b", {"n": 2})  # the store itself recovers on the next call
        events = list(store.watch("/w/", seen[-1].revision + 1, timeout=0.3))
        assert events == [Event("/w/b", {"n": 2}, later)]
        store.close()


def test_watch_iterator_that_is_never_started_holds_nothing(etcd):
    store = EtcdStore([etcd.url])
    store.watch("/w/", store.current_revision() + 1, timeout=1)
    assert not store._streams
    store.close()


def test_watch_stream_lines_from_etcd_3_4():
    """The gateway's answers as etcd 3.4.23 sent them (etcd3gw's own watch drops the last three)."""
    url = "http://127.0.0.1:2379"
    created = {"result": {"header": {"revision": "9"}, "created": True}}
    events = {"result": {"header": {"revision": "9"}, "events": [
        {"kv": {"key": "L3cveA==", "create_revision": "4", "mod_revision": "6", "version": "3", "value": "e30="}},
        {"type": "DELETE", "kv": {"key": "L3cveA==", "mod_revision": "9"}}]}}
    compacted = {"result": {"header": {}, "canceled": True, "compact_revision": "6"}}
    canceled = {"result": {"header": {}, "canceled": True, "cancel_reason": "permission denied"}}
    closing = {"error": {"grpc_code": 14, "http_code": 503, "message": "transport is closing"}}
    assert watch_item(created, url) == []
    assert watch_item(events, url) == [Event("/w/x", {}, 6), Event("/w/x", None, 9)]
    assert isinstance(watch_item(compacted, url), Compacted)
    assert "permission denied" in str(watch_item(canceled, url))
    assert isinstance(watch_item(closing, url), Unavailable)
