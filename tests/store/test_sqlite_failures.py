"""SqliteStore when sqlite refuses: failed writes are rolled back and named, a corrupt file stops
`pynet serve` with one line."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from pynet.errors import PynetError, Retryable
from pynet.store.sqlite import SqliteStore, check_file


def _state(store: SqliteStore):
    return store.current_revision(), [(e.key, e.value) for e in store.list("/")], \
        list(store.watch("/", 1, timeout=0))


def test_a_full_database_refuses_the_write_cleanly_and_keeps_working(tmp_path):
    store = SqliteStore(str(tmp_path / "pynet.db"))
    try:
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages}")  # the file may not grow: as on a full disk
        before = _state(store)
        with pytest.raises(PynetError) as err:
            for i in range(10_000):
                store.create(f"/k/{i:05d}", {"pad": "x" * 2000})
        assert "full" in str(err.value) and "nothing was changed" in str(err.value)
        assert not isinstance(err.value, Retryable)
        failed = f"/k/{i:05d}"
        assert store.get(failed) is None  # no half-written record ...
        assert i > 0 and store.current_revision() == before[0] + i  # ... and no revision or event for it
        assert [e.key for e in store.watch("/", before[0] + 1, timeout=0)][-1] == f"/k/{i - 1:05d}"
        assert not store._db.in_transaction
        store._db.execute("PRAGMA max_page_count = 1073741823")
        assert store.create(failed, {"n": 1}) == before[0] + i + 1  # the same connection works again
    finally:
        store.close()


class _FailingCommit:
    """The connection port of a SqliteStore with COMMIT failing once, as an I/O error at commit would."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self.fail_next_commit = True

    def execute(self, sql, *args):
        if sql == "COMMIT" and self.fail_next_commit:
            self.fail_next_commit = False
            raise sqlite3.OperationalError("disk I/O error")
        return self._db.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._db, name)


def test_a_failed_commit_is_rolled_back_and_the_connection_stays_usable(tmp_path):
    store = SqliteStore(str(tmp_path / "pynet.db"))
    try:
        rev = store.create("/a", {"n": 1})
        store._db = _FailingCommit(store._db)
        with pytest.raises(PynetError) as err:
            store.cas("/a", {"n": 2}, rev)
        assert "disk I/O error" in str(err.value) and str(tmp_path) in str(err.value)
        assert not store._db.in_transaction  # without the rollback every later BEGIN would fail
        assert store.get("/a").value == {"n": 1} and store.current_revision() == rev
        assert store.cas("/a", {"n": 3}, rev) == rev + 1
        reopened = SqliteStore(str(tmp_path / "pynet.db"))
        assert reopened.get("/a").value == {"n": 3}
        reopened.close()
    finally:
        store.close()


def test_check_file_accepts_a_missing_a_fresh_and_a_used_store(tmp_path):
    path = str(tmp_path / "pynet.db")
    assert check_file(path) == ""
    store = SqliteStore(path)
    store.create("/k", {"v": 1})
    store.close()
    assert check_file(path) == ""


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign"])
def test_check_file_names_a_corrupt_store_and_what_to_do(tmp_path, damage):
    path = str(tmp_path / "pynet.db")
    _damage(path, damage)
    problem = check_file(path)
    assert problem and "\n" not in problem
    assert path in problem and "move" in problem


def _damage(path: str, how: str) -> None:
    if how == "garbage":
        with open(path, "wb") as f:
            f.write(b"this is not sqlite at all\n" * 200)
        return
    store = SqliteStore(path)
    for i in range(300):
        store.create(f"/k/{i}", {"pad": "x" * 500})
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    if how == "truncated":
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.seek(size // 2)
            f.write(b"\xff" * 4096)  # a page half-way through, overwritten
            f.truncate(size - 8192)
    else:
        db = sqlite3.connect(path)
        db.execute("DROP TABLE meta")
        db.commit()
        db.close()


def test_pynet_serve_stops_on_a_corrupt_store_with_one_line(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    _damage(str(state / "pynet.db"), "garbage")
    sock = tmp_path / "pn.sock"
    p = subprocess.run([sys.executable, "-m", "pynet.plugin.cli", "serve", "--state-dir", str(state),
                        "--socket", str(sock)], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    lines = [line for line in p.stderr.splitlines() if line.strip() and " INFO " not in line]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("pynet: the state store ") and "move" in lines[0], p.stderr
    assert "Traceback" not in p.stderr and not sock.exists()
