"""The etcd security settings of ``pynet serve``: read once into an EtcdSecurity, checked at start.

``security`` turns the --etcd-* flags into the store's EtcdSecurity (reading the password file:
the password itself never sits in a flag, the environment or the process list); ``check`` runs the
store's start-up check (store/etcd_preflight.py) and turns a misconfiguration into one line and a
non-zero exit, before gunicorn binds the socket.
"""

from __future__ import annotations

import logging

from pynet.plugin.settings import Settings

log = logging.getLogger("pynet")
MAX_PASSWORD = 4096  # bytes; a password file is one line, not a log someone pointed us at


def security(settings: Settings):
    """The EtcdSecurity of ``settings``; ValueError naming the flag when it cannot be built."""
    from pynet.store.etcd_auth import EtcdSecurity

    password = None
    if settings.etcd_password_file:
        password = read_password(settings.etcd_password_file)
    return EtcdSecurity(ca=settings.etcd_ca or None, cert=settings.etcd_cert or None,
                        key=settings.etcd_key or None, user=settings.etcd_user or None, password=password)


def read_password(path: str) -> str:
    """The first line of ``path`` (a trailing newline is not part of the password)."""
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_PASSWORD + 1)
    except OSError as err:
        raise ValueError(f"--etcd-password-file {path}: cannot read it: {err.strerror or err}") from None
    if len(raw) > MAX_PASSWORD:
        raise ValueError(f"--etcd-password-file {path}: longer than {MAX_PASSWORD} bytes, not a password file")
    try:
        lines = raw.decode().splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"--etcd-password-file {path}: not UTF-8 text") from None
    if not lines or not lines[0]:
        raise ValueError(f"--etcd-password-file {path}: empty")
    return lines[0]


def check(settings: Settings) -> None:
    """SystemExit with one line if etcd cannot be used as configured; logs unreachable endpoints."""
    from pynet.store.etcd_preflight import Misconfigured, preflight

    try:
        unreachable = preflight(settings.etcd, security(settings))
    except (ValueError, Misconfigured) as exc:
        raise SystemExit(f"pynet: {exc}") from None
    for url in unreachable:
        log.warning("etcd at %s does not answer at start; pynet starts and keeps trying", url)
