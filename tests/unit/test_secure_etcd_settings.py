"""The secure-etcd settings: flags and environment, the password file, the pairs that go together."""

from __future__ import annotations

import pytest

from pynet.plugin import cli, secure_etcd
from pynet.plugin.settings import resolve
from pynet.store.etcd_auth import EtcdSecurity, token_rejected
from pynet.store.etcd_watch import WatchDenied, watch_item


def test_flags_and_environment():
    env = {"PYNET_ETCD_CA": "/etc/pynet/ca.pem", "PYNET_ETCD_CERT": "/etc/pynet/host.pem",
           "PYNET_ETCD_KEY": "/etc/pynet/host-key.pem", "PYNET_ETCD_USER": "pynet",
           "PYNET_ETCD_PASSWORD_FILE": "/etc/pynet/etcd-password"}
    s = resolve({}, env)
    assert (s.etcd_ca, s.etcd_cert, s.etcd_key, s.etcd_user, s.etcd_password_file) == tuple(env.values())
    args = cli._parser().parse_args(["serve", "--etcd-ca", "/a", "--etcd-cert", "/b", "--etcd-key", "/c",
                                     "--etcd-user", "u", "--etcd-password-file", "/p"])
    s = resolve(vars(args), env)
    assert (s.etcd_ca, s.etcd_cert, s.etcd_key, s.etcd_user, s.etcd_password_file) == ("/a", "/b", "/c", "u", "/p")


def test_password_file_first_line_only(tmp_path):
    path = tmp_path / "pw"
    path.write_text("s3cret\n")
    assert secure_etcd.read_password(str(path)) == "s3cret"
    path.write_text("")
    with pytest.raises(ValueError, match="empty"):
        secure_etcd.read_password(str(path))
    path.write_bytes(b"x" * 5000)
    with pytest.raises(ValueError, match="not a password file"):
        secure_etcd.read_password(str(path))
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match="not UTF-8"):
        secure_etcd.read_password(str(path))
    with pytest.raises(ValueError, match="cannot read it"):
        secure_etcd.read_password(str(tmp_path / "absent"))


def test_half_configurations_are_refused():
    with pytest.raises(ValueError, match="both --etcd-cert and --etcd-key"):
        EtcdSecurity(cert="/c")
    with pytest.raises(ValueError, match="both --etcd-user and --etcd-password-file"):
        EtcdSecurity(user="pynet")
    with pytest.raises(ValueError, match="both --etcd-user and --etcd-password-file"):
        EtcdSecurity(password="x")
    assert not EtcdSecurity().tls and EtcdSecurity(ca="/ca").tls


def test_the_env_ca_bundle_cannot_override_the_given_ca():
    import requests

    session = requests.Session()
    EtcdSecurity(ca="/ca.pem", cert="/c", key="/k").configure(session)
    assert session.verify == "/ca.pem" and session.cert == ("/c", "/k") and session.trust_env is False


def test_watch_cancellations_for_auth_are_not_compactions():
    stale = {"result": {"canceled": True, "cancel_reason":
                        "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"}}
    denied = {"result": {"canceled": True, "cancel_reason": "etcdserver: permission denied"}}
    assert isinstance(watch_item(stale, "u"), WatchDenied) and isinstance(watch_item(denied, "u"), WatchDenied)
    assert token_rejected("etcdserver: invalid auth token") and not token_rejected("etcdserver: permission denied")
