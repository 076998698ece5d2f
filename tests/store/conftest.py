"""Fixtures for the store conformance suite: every test runs on every implementation."""

from __future__ import annotations

import pytest

from store.memory import MemoryStore
from store.sqlite import SqliteStore

IMPLEMENTATIONS = ["memory", "sqlite"]


@pytest.fixture(params=IMPLEMENTATIONS)
def make_store(request, tmp_path):
    """A factory ``make_store(history=...)`` for fresh stores of one implementation; all closed afterwards."""
    opened = []

    def make(**kwargs):
        if request.param == "memory":
            store = MemoryStore(**kwargs)
        else:
            store = SqliteStore(str(tmp_path / f"store{len(opened)}.db"), **kwargs)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store):
    return make_store()
