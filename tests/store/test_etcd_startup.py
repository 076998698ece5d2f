"""``pynet serve`` against a misconfigured secure etcd: exit 1 at start, one line naming the problem.

Each case runs the real command (``python -m pynet.plugin.cli serve``) against the secured etcd of
conftest.py, without dockerd: the check runs before anything is bound or touched (socket, state
dir, kernel), so the socket path below must not appear.  ``preflight`` is also called directly for
the good configuration and the cases that need no process.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from pynet.store.etcd_preflight import Misconfigured, preflight
from pynet.lab.etcd import free_port


def serve(tmp_path, url: str, *flags: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "pynet.plugin.cli", "serve", "--socket", str(tmp_path / "p.sock"),
            "--state-dir", str(tmp_path / "state"), "--etcd", url, "--vtep-address", "127.0.0.1", *flags]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def flags(secure, **override) -> list[str]:
    values = {"ca": secure.ca.cert, "cert": secure.client.cert, "key": secure.client.key,
              "user": "pynet", "password-file": secure.password_file}
    values.update(override)
    out = []
    for name, value in values.items():
        if value is not None:
            out += [f"--etcd-{name}", str(value)]
    return out


CASES = {
    # name: (flag overrides, url scheme, the line must match)
    "wrong CA": (dict(ca="rogue_ca"), "https", r"server certificate is not verified by --etcd-ca .*rogue-ca\.pem"),
    "certificate for another address": ({}, "https-localhost",
                                        r"server certificate is not valid for that address \(Hostname mismatch"),
    "no client certificate": (dict(cert=None, key=None), "https", r"requires a client certificate: give --etcd-cert"),
    "client certificate of another CA": (dict(cert="rogue", key="rogue_key"), "https",
                                         r"refused the client certificate --etcd-cert .*intruder\.pem"),
    "certificate with a CN": (dict(cert="with_cn", key="with_cn_key"), "https",
                              r"refuses client certificates that have a Common Name"),
    "bad password": (dict(**{"password-file": "bad_password"}), "https",
                     r"refused user 'pynet': .*authentication failed, invalid user ID or password"),
    "unknown user": (dict(user="nobody"), "https", r"refused user 'nobody': .*authentication failed"),
    "no user on an auth etcd": (dict(user=None, **{"password-file": None}), "https",
                                r"requires authentication: give --etcd-user and --etcd-password-file"),
    "a user without pynet's prefix": (dict(user="other", **{"password-file": "other_password"}), "https",
                                      r"user 'other' may not read and write pynet's prefix /pynet/v1/"),
    "http to a TLS-only etcd": (dict(ca=None, cert=None, key=None, user=None, **{"password-file": None}), "http",
                                r"speaks TLS only: use https://"),
    "missing certificate file": (dict(cert="missing"), "https", r"--etcd-cert .*/nope\.pem: cannot read it: No such file"),
    "unreadable key": (dict(key="directory"), "https", r"--etcd-key .*: cannot read it: Is a directory"),
    "key of another certificate": (dict(key="rogue_key"), "https", r"not a PEM certificate and its matching key"),
    "password file missing": (dict(**{"password-file": "missing"}), "https",
                              r"--etcd-password-file .*/nope\.pem: cannot read it"),
    "user without password file": (dict(**{"password-file": None}), "https",
                                   r"needs both --etcd-user and --etcd-password-file"),
}


def resolve(secure, tmp_path, value):
    other = tmp_path / "other-password"
    other.write_text("other-secret\n")
    bad = tmp_path / "bad-password"
    bad.write_text("not-it\n")
    files = {"rogue_ca": secure.rogue_ca.cert, "rogue": secure.rogue.cert, "rogue_key": secure.rogue.key,
             "with_cn": secure.with_cn.cert, "with_cn_key": secure.with_cn.key, "bad_password": bad,
             "other_password": other, "missing": tmp_path / "nope.pem", "directory": tmp_path}
    return files.get(value, value) if isinstance(value, str) else value


@pytest.mark.parametrize("case", list(CASES))
def test_serve_refuses_a_misconfigured_etcd_in_one_line(secure_etcd, tmp_path, case):
    override, scheme, expected = CASES[case]
    override = {k: resolve(secure_etcd, tmp_path, v) for k, v in override.items()}
    url = secure_etcd.url.replace("https://", f"{scheme}://")
    if scheme == "https-localhost":  # the server certificate names 127.0.0.1 only
        url = secure_etcd.url.replace("127.0.0.1", "localhost")
    proc = serve(tmp_path, url, *flags(secure_etcd, **override))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("pynet: ")
    assert re.search(expected, lines[0]), lines[0]
    assert not (tmp_path / "p.sock").exists() and not (tmp_path / "state").exists()


def test_the_good_configuration_passes(secure_etcd):
    assert preflight(secure_etcd.url, secure_etcd.security(), timeout=3) == []


def test_an_endpoint_that_does_not_answer_is_not_a_misconfiguration(secure_etcd):
    dead = f"https://127.0.0.1:{free_port()}"
    assert preflight(f"{dead},{secure_etcd.url}", secure_etcd.security(), timeout=1) == [dead]


def test_tls_files_with_an_http_url_are_refused(secure_etcd):
    with pytest.raises(Misconfigured, match="is not https://, but TLS files are given"):
        preflight(secure_etcd.url.replace("https", "http"), secure_etcd.security(), timeout=1)
