"""Images without a registry: busybox (and iperf3) from this machine's own binaries, as tarballs for
``docker import``, cached by the binaries' size and mtime (environment.md, "Images without a registry")."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Iterable

from pynet.lab.proc import LabError, run

CACHE_DIR = Path(os.environ.get("PYNET_TEST_CACHE", "/var/cache/pynet-tests"))
BUSYBOX_APPLETS = (
    "sh ip ping sleep cat nc wget httpd hostname nslookup ifconfig route top true false echo ls "
    "ps kill grep sed awk head tail wc env id mkdir rm cp mv ln touch chmod date uname arp netstat "
    "traceroute ping6 udhcpc seq tr cut sort uniq tee xargs find test [ printf dd timeout mount "
    "umount df free watch telnet"
).split()


def cache_dir() -> Path:
    try:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        return CACHE_DIR
    except OSError:
        d = Path("/tmp/pynet-tests-cache")
        d.mkdir(parents=True, exist_ok=True)
        return d


def _busybox_path() -> Path:
    for p in ("/bin/busybox", "/usr/bin/busybox"):
        if Path(p).exists():
            return Path(p).resolve()
    found = shutil.which("busybox")
    if not found:
        raise LabError("busybox not found (apt-get install busybox-static)")
    return Path(found).resolve()


def _iperf_files() -> list[str]:
    iperf = shutil.which("iperf3") or "/usr/bin/iperf3"
    if not Path(iperf).exists():
        raise LabError("iperf3 not found (apt-get install iperf3)")
    files = [iperf]
    for line in run(["ldd", iperf]).stdout.splitlines():
        parts = line.split()
        if "=>" in parts:
            tgt = parts[parts.index("=>") + 1]
            if tgt.startswith("/"):
                files.append(tgt)
        elif parts and parts[0].startswith("/"):
            files.append(parts[0])  # the dynamic loader
    return files


def _fingerprint(kind: str) -> str:
    h = hashlib.sha256(kind.encode() + b"v2" + " ".join(BUSYBOX_APPLETS).encode())
    files = [str(_busybox_path())] + (_iperf_files() if kind == "pn-iperf" else [])
    for f in files:
        st = os.stat(f)
        h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def cached_tar(kind: str, builder) -> Path:
    path = cache_dir() / f"{kind}-{_fingerprint(kind)}.tar"
    if not path.exists():
        # unique per call, not per process: the lab starts its hosts from parallel threads of one process,
        # and two builders sharing a temporary name rename it from under each other
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w") as tar:
                builder(tar)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
    return path


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mode = mode
    ti.mtime = 0
    tar.addfile(ti)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = mode
    ti.mtime = 0
    tar.addfile(ti, io.BytesIO(data))


def _add_symlink(tar: tarfile.TarFile, name: str, target: str) -> None:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.SYMTYPE
    ti.linkname = target
    ti.mode = 0o777
    ti.mtime = 0
    tar.addfile(ti)


def build_busybox_tar(tar: tarfile.TarFile, extra_dirs: Iterable[str] = ()) -> None:
    for d in ("bin", "etc", "proc", "sys", "dev", "root", "var", "usr", "usr/bin", *extra_dirs):
        _add_dir(tar, d)
    _add_dir(tar, "tmp", 0o1777)
    _add_dir(tar, "var/tmp", 0o1777)
    _add_bytes(tar, "bin/busybox", _busybox_path().read_bytes(), 0o755)
    for a in BUSYBOX_APPLETS:
        _add_symlink(tar, f"bin/{a}", "busybox")
    _add_bytes(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    _add_bytes(tar, "etc/group", b"root:x:0:\nnogroup:x:65534:\n")


def build_iperf_tar(tar: tarfile.TarFile) -> None:
    files = _iperf_files()
    dirs: set[str] = set()
    for f in files:
        parts = Path(f).parent.relative_to("/").parts
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    build_busybox_tar(tar, extra_dirs=sorted(d for d in dirs if d not in ("bin", "usr", "usr/bin")))
    for f in files:
        data = Path(f).resolve().read_bytes()  # keep the path ldd names, store the real content
        _add_bytes(tar, f.lstrip("/"), data, 0o755)
