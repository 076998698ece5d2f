"""A real dockerd of our own, in a network namespace of our own: the e2e tier's "host".

    host = DockerHost("a", Path("/tmp/pn-e2e-xyz/a"))
    try:
        host.start()                 # netns pn-t-a-XXXX, private mounts, private containerd, dockerd up
        host.load_busybox()          # busybox:local and pn-iperf:local
        host.start_pynet()           # pynet serve on <plugins dir>/pynet.sock, in the same netns
        host.docker("network", "create", "-d", "pynet", "--ipam-driver", "pynet", "n1")
    finally:
        host.stop()                  # idempotent; leaves no netns, mount, process, cgroup or file

Layout:
- netns ``pn-t-<name>-<rand4>`` (``/run/netns``), lo up.
- an "anchor" process (``sleep infinity``) started by ``ip netns exec NS unshare -m`` through
  ``netns-dockerd.sh``; its private mount namespace has the cgroup mounts replayed, a tmpfs over
  ``/run/docker`` and ``/run/containerd``, ``<workdir>/plugins`` bound over ``/run/docker/plugins``
  and ``<workdir>/etc-docker`` over ``/etc/docker``. Every start of dockerd enters that mount namespace
  and the netns with ``nsenter``, so a dockerd restart sees the same /run, like on a real machine.
- dockerd with its own --data-root, --exec-root, -H unix socket, --pidfile, --config-file,
  --cgroup-parent (so container processes can be found and killed through the cgroup), and its own
  managed containerd (no /run/containerd/containerd.sock in its mount namespace).
- pynet runs in the same netns via ``ip netns exec`` (host mount namespace), its socket in
  ``<workdir>/plugins``, which only this dockerd sees as /run/docker/plugins.

Nothing here touches anything it did not create. A record of every live host is written to
``/run/pynet-tests/<netns>.json`` so ``reap_stale()`` can clean up after a run that was SIGKILLed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, Sequence

from pynet.lab.images import build_busybox_tar, build_iperf_tar, cached_tar
from pynet.lab.proc import (LIVE, LIVE_LOCK, CommandError, DockerHostError, binary, ns_inode,
                            pid_alive, pynet_executable, run, tail)

HERE = Path(__file__).resolve().parent
WRAPPER = HERE / "netns-dockerd.sh"
RECORD_DIR = Path("/run/pynet-tests")
NETNS_PREFIX = "pn-t-"



# --------------------------------------------------------------------------------------------------
class DockerHost:
    def __init__(self, name: str, workdir: Path, storage_driver: str | None = None,
                 dockerd_args: Sequence[str] = (), daemon_config: dict | None = None):
        self.name = name
        self.workdir = Path(workdir).absolute()
        self.netns = f"{NETNS_PREFIX}{name}-{secrets.token_hex(2)}"
        if len(self.netns) > 64:
            raise ValueError("name too long")
        self.cgroup_parent = self.netns
        self.data_root = self.workdir / "data"
        self.exec_root = self.workdir / "exec"
        self.plugins_path = self.workdir / "plugins"
        self.etc_docker = self.workdir / "etc-docker"
        self.client_config = self.workdir / "client"
        self.logs = self.workdir / "logs"
        self.pidfile = self.workdir / "dockerd.pid"
        self.socket_path = self.workdir / "docker.sock"
        self.pynet_state = self.workdir / "pynet-state"
        self.storage_driver = storage_driver
        self.dockerd_args = list(dockerd_args)
        self.daemon_config = dict(daemon_config or {})  # daemon.json, e.g. {"dns": ["169.254.53.53"]}
        self.dockerd_log = self.logs / "dockerd.log"
        self.pynet_log = self.logs / "pynet.log"
        self._anchor: subprocess.Popen | None = None
        self._dockerd: subprocess.Popen | None = None
        self._pynet: subprocess.Popen | None = None
        self._pynet_args: tuple = ()
        self._pynet_env: dict | None = None
        self._netns_created = False
        self._stopped = False
        if len(str(self.exec_root / "containerd" / "containerd.sock.ttrpc")) > 100:
            raise ValueError(f"workdir path too long for unix sockets: {self.workdir}")

    def __repr__(self) -> str:
        return f"DockerHost({self.name!r}, netns={self.netns!r}, workdir={str(self.workdir)!r})"

    # ---------------------------------------------------------------- properties
    @property
    def host(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def plugins_dir(self) -> Path:
        """The directory this daemon (only) sees as /run/docker/plugins."""
        return self.plugins_path

    @property
    def pynet_socket(self) -> Path:
        return self.plugins_path / "pynet.sock"

    @property
    def dockerd_pid(self) -> int | None:
        return self._dockerd.pid if self._dockerd else None

    @property
    def pynet_proc(self) -> subprocess.Popen | None:
        return self._pynet

    @property
    def anchor_pid(self) -> int | None:
        return self._anchor.pid if self._anchor else None

    # ---------------------------------------------------------------- commands
    def docker(self, *args, check: bool = True, timeout: float = 120, input: str | None = None
               ) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_CONFIG"] = str(self.client_config)
        env["DOCKER_CLI_HINTS"] = "false"
        argv = [binary("docker"), "-H", self.host, *map(str, args)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, input=input)
        if check and proc.returncode != 0:
            raise CommandError(["docker", *map(str, args)], proc)
        return proc

    def ns_exec(self, *argv, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a command in this host's netns (host mount namespace, /sys of the netns)."""
        return run([binary("ip"), "netns", "exec", self.netns, *argv], check=check, timeout=timeout)

    def mnt_exec(self, *argv, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a command in this host's netns AND dockerd's private mount namespace
        (sees the daemon's /run/docker, exec-root mounts, container netns files)."""
        if not self._anchor:
            raise DockerHostError("host not started")
        return run([binary("nsenter"), f"--target={self._anchor.pid}", "--mount", "--net", "--", *argv],
                    check=check, timeout=timeout)

    # ---------------------------------------------------------------- start
    def start(self, timeout: float = 60) -> "DockerHost":
        if self._stopped:
            raise DockerHostError("a stopped DockerHost cannot be started again; make a new one")
        with LIVE_LOCK:
            LIVE.add(self)
        try:
            self._setup_dirs()
            run([binary("ip"), "netns", "add", self.netns])
            self._netns_created = True
            self._write_record()
            run([binary("ip"), "-n", self.netns, "link", "set", "lo", "up"])
            self._start_anchor()
            self._start_dockerd(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _setup_dirs(self) -> None:
        for d in (self.workdir, self.data_root, self.exec_root, self.plugins_path, self.etc_docker,
                  self.client_config, self.logs, self.pynet_state):
            d.mkdir(parents=True, exist_ok=True)
        (self.etc_docker / "daemon.json").write_text(json.dumps(self.daemon_config) + "\n")
        # mount points in the host's /run and /etc: created empty if missing (nothing is put in them)
        for mp in ("/run/docker", "/run/containerd", "/etc/docker"):
            os.makedirs(mp, exist_ok=True)
        lines = []
        with open("/proc/self/mounts") as f:
            for line in f:
                dev, target, fstype, opts, *_ = line.split()
                if target == "/sys/fs/cgroup" or target.startswith("/sys/fs/cgroup/"):
                    lines.append(f"{fstype} {target} {opts}")
        (self.workdir / "cgroup-mounts").write_text("\n".join(lines) + "\n")

    def _start_anchor(self) -> None:
        ready = self.workdir / "anchor.ready"
        ready.unlink(missing_ok=True)
        env = dict(os.environ, PN_CGROUP_MOUNTS=str(self.workdir / "cgroup-mounts"),
                   PN_PLUGINS_DIR=str(self.plugins_path), PN_ETC_DOCKER=str(self.etc_docker),
                   PN_READY=str(ready))
        log = open(self.logs / "anchor.log", "ab")
        try:
            self._anchor = subprocess.Popen(
                [binary("ip"), "netns", "exec", self.netns, binary("unshare"), "-m", "--propagation", "slave",
                 "sh", str(WRAPPER), "sleep", "infinity"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        finally:
            log.close()
        self._write_record()
        deadline = time.monotonic() + 10
        while not ready.exists():
            if self._anchor.poll() is not None:
                raise DockerHostError(f"mount-namespace setup failed:\n{tail(self.logs / 'anchor.log')}")
            if time.monotonic() > deadline:
                raise DockerHostError(f"mount-namespace setup timed out:\n{tail(self.logs / 'anchor.log')}")
            time.sleep(0.02)

    def _pick_storage_driver(self) -> str:
        if self.storage_driver:
            return self.storage_driver
        env = os.environ.get("PYNET_TEST_STORAGE_DRIVER")
        if env:
            return env
        try:
            fs = run(["stat", "-f", "-c", "%T", str(self.data_root)]).stdout.strip()
        except Exception:
            fs = "?"
        if "overlay" in Path("/proc/filesystems").read_text() and fs not in ("overlayfs", "tmpfs", "?"):
            return "overlay2"
        return "vfs"

    def _dockerd_argv(self) -> list[str]:
        return [
            binary("dockerd"),
            f"--data-root={self.data_root}",
            f"--exec-root={self.exec_root}",
            f"-H=unix://{self.socket_path}",
            f"--pidfile={self.pidfile}",
            f"--config-file={self.etc_docker / 'daemon.json'}",
            f"--cgroup-parent=/{self.cgroup_parent}",
            "--iptables=true",
            "--ip-forward=true",
            f"--storage-driver={self._pick_storage_driver()}",
            "--log-level=info",
            *self.dockerd_args,
        ]

    def _start_dockerd(self, timeout: float = 60) -> None:
        assert self._anchor is not None
        self.pidfile.unlink(missing_ok=True)
        log = open(self.dockerd_log, "ab")
        log.write(f"\n==== dockerd start {time.strftime('%F %T')} ====\n".encode())
        log.flush()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["PATH"] = env.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin"
        # containerd writes containerd.<pid>.stacks.log to $TMPDIR on SIGUSR1: keep it in our workdir
        (self.workdir / "tmp").mkdir(exist_ok=True)
        env["TMPDIR"] = str(self.workdir / "tmp")
        try:
            # nsenter (no --pid) execs directly: the Popen PID is dockerd's
            self._dockerd = subprocess.Popen(
                [binary("nsenter"), f"--target={self._anchor.pid}", "--mount", "--net", "--",
                 *self._dockerd_argv()],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        finally:
            log.close()
        self._write_record()
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            if self._dockerd.poll() is not None:
                raise DockerHostError(
                    f"dockerd exited with {self._dockerd.returncode}; log tail:\n{tail(self.dockerd_log)}")
            if self.socket_path.exists():
                p = self.docker("info", "--format", "{{.ServerVersion}}", check=False, timeout=10)
                if p.returncode == 0:
                    return
                last = p.stderr
            if time.monotonic() > deadline:
                raise DockerHostError(
                    f"dockerd did not answer within {timeout}s ({last.strip()}); log tail:\n{tail(self.dockerd_log)}")
            time.sleep(0.1)

    # ---------------------------------------------------------------- dockerd restart
    def _stop_dockerd(self, timeout: float = 20) -> None:
        p = self._dockerd
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        self._dockerd = None

    def restart_dockerd(self, timeout: float = 60) -> None:
        self._stop_dockerd()
        self._start_dockerd(timeout)

    # ---------------------------------------------------------------- pynet
    def start_pynet(self, extra_args: Iterable[str] = (), env: dict | None = None,
                    timeout: float = 10) -> subprocess.Popen:
        if self._pynet and self._pynet.poll() is None:
            raise DockerHostError("pynet already running")
        self._pynet_args = tuple(extra_args)
        self._pynet_env = env
        full_env = dict(os.environ)
        full_env.update(env or {})
        log = open(self.pynet_log, "ab")
        log.write(f"\n==== pynet start {time.strftime('%F %T')} ====\n".encode())
        log.flush()
        argv = [binary("ip"), "netns", "exec", self.netns, pynet_executable(), "serve",
                "--socket", str(self.pynet_socket), "--state-dir", str(self.pynet_state),
                "--log-level", "debug", *self._pynet_args]
        if "--docker-host" not in self._pynet_args:
            # pynet's background loops (orphan GC, cluster sync) ask this host's dockerd, never the
            # machine's default socket: a test never reads or touches a daemon it did not start
            argv += ["--docker-host", self.host]
        try:
            self._pynet = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                           env=full_env, start_new_session=True)
        finally:
            log.close()
        self._write_record()
        deadline = time.monotonic() + timeout
        while True:
            if self._pynet.poll() is not None:
                raise DockerHostError(f"pynet exited with {self._pynet.returncode}; log tail:\n{tail(self.pynet_log)}")
            if self.pynet_socket.exists():
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.settimeout(1)
                    s.connect(str(self.pynet_socket))
                    return self._pynet
                except OSError:
                    pass
                finally:
                    s.close()
            if time.monotonic() > deadline:
                raise DockerHostError(f"pynet socket {self.pynet_socket} not up within {timeout}s; "
                                      f"log tail:\n{tail(self.pynet_log)}")
            time.sleep(0.05)

    def kill_pynet(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        """Send `sig` to pynet (its main process) and wait for it; SIGKILLs the whole process group
        (its own session, so only pynet and its workers) if it has not exited by `timeout`.
        Returns the exit code (None if it was not running)."""
        p = self._pynet
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                self._killpg(p)
                p.wait(10)
        self._killpg(p)  # stray workers, if any
        return p.returncode

    def restart_pynet(self, sig: int = signal.SIGTERM) -> subprocess.Popen:
        self.kill_pynet(sig)
        return self.start_pynet(self._pynet_args, self._pynet_env)

    restart = restart_pynet

    @staticmethod
    def _killpg(p: subprocess.Popen) -> None:
        try:
            os.killpg(p.pid, signal.SIGKILL)  # pgid == pid: start_new_session=True
        except (ProcessLookupError, PermissionError):
            pass

    # ---------------------------------------------------------------- images
    def load_busybox(self, iperf: bool = True) -> None:
        bb = cached_tar("busybox", build_busybox_tar)
        self.docker("import", "-c", 'CMD ["/bin/sh"]', str(bb), "busybox:local", timeout=120)
        if iperf:
            ip = cached_tar("pn-iperf", build_iperf_tar)
            self.docker("import", "-c", 'CMD ["/bin/sh"]', str(ip), "pn-iperf:local", timeout=120)

    # ---------------------------------------------------------------- helpers for tests
    def links(self) -> list[str]:
        out = self.ns_exec("ip", "-o", "link", "show").stdout
        return [line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]

    def container_ip(self, container: str, network: str) -> str:
        return self.docker("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}',
                           container).stdout.strip()

    # ---------------------------------------------------------------- stop
    def stop(self) -> None:
        """Stop everything this host started and remove everything it created. Idempotent."""
        errors: list[str] = []

        def step(what, fn, *a):
            try:
                fn(*a)
            except Exception as e:
                errors.append(f"{what}: {e}")

        if not self._stopped:
            if self._dockerd and self._dockerd.poll() is None:
                step("remove containers", self._rm_containers)
            step("stop dockerd", self._stop_dockerd)
            step("stop pynet", self.kill_pynet, signal.SIGTERM, 10)
        step("kill leftovers", self._kill_leftovers)
        step("remove cgroups", self._remove_cgroups)
        step("unmount", self._umount_workdir)
        step("delete netns", self._delete_netns)
        step("remove workdir", self._remove_workdir)
        self._stopped = True
        with LIVE_LOCK:
            LIVE.discard(self)
        if not errors:
            self._record_path().unlink(missing_ok=True)
        else:
            print(f"dockerhost: stop of {self.netns} incomplete: {errors}", file=sys.stderr)

    def _rm_containers(self) -> None:
        ids = self.docker("ps", "-aq", timeout=30).stdout.split()
        if ids:
            self.docker("rm", "-f", *ids, check=False, timeout=60)

    def _our_pids(self) -> set[int]:
        """PIDs in our netns or under our cgroup parent (container processes)."""
        pids: set[int] = set()
        ns_ino = ns_inode(f"/run/netns/{self.netns}")
        if ns_ino is not None:
            for d in os.listdir("/proc"):
                if d.isdigit() and ns_inode(f"/proc/{d}/ns/net") == ns_ino:
                    pids.add(int(d))
        for cg in self._cgroup_dirs():
            for procs in cg.rglob("cgroup.procs"):
                try:
                    pids.update(int(x) for x in procs.read_text().split())
                except OSError:
                    pass
        pids.discard(os.getpid())
        return pids

    def _kill_leftovers(self) -> None:
        if self._anchor is not None and self._anchor.poll() is None:
            self._anchor.kill()
        for _ in range(50):
            pids = {p for p in self._our_pids() if pid_alive(p)}
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        for p in (self._anchor, self._dockerd, self._pynet):
            if p is not None:
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        left = {p for p in self._our_pids() if pid_alive(p)}
        if left:
            raise DockerHostError(f"processes survived SIGKILL: {sorted(left)}")

    def _cgroup_dirs(self) -> list[Path]:
        out = []
        if not self.cgroup_parent.startswith(NETNS_PREFIX) or "/" in self.cgroup_parent:
            return out  # never widen to a cgroup (or the root) that is not ours
        try:
            with open("/proc/self/mounts") as f:
                for line in f:
                    _, target, fstype, *_ = line.split()
                    if fstype in ("cgroup", "cgroup2"):
                        d = Path(target) / self.cgroup_parent
                        if d.is_dir():
                            out.append(d)
        except OSError:
            pass
        return out

    def _remove_cgroups(self) -> None:
        for top in self._cgroup_dirs():
            subdirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
            for d in [*subdirs, top]:
                for _ in range(20):
                    try:
                        d.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.05)

    def _umount_workdir(self) -> None:
        prefix = str(self.workdir)
        mounts = []
        with open("/proc/self/mounts") as f:
            for line in f:
                target = line.split()[1].replace("\\040", " ")
                if target == prefix or target.startswith(prefix + "/"):
                    mounts.append(target)
        for target in sorted(set(mounts), key=len, reverse=True):
            run(["umount", "-l", target], check=False)

    def _delete_netns(self) -> None:
        if self._netns_created or Path(f"/run/netns/{self.netns}").exists():
            if Path(f"/run/netns/{self.netns}").exists():
                run([binary("ip"), "netns", "delete", self.netns])
            self._netns_created = False

    def _remove_workdir(self) -> None:
        if not self.workdir.exists():
            return
        prefix = str(self.workdir)
        with open("/proc/self/mounts") as f:
            if any(line.split()[1] == prefix or line.split()[1].startswith(prefix + "/") for line in f):
                raise DockerHostError(f"mounts remain under {prefix}; not removing it")
        shutil.rmtree(self.workdir, ignore_errors=False)

    # ---------------------------------------------------------------- crash records
    def _record_path(self) -> Path:
        return RECORD_DIR / f"{self.netns}.json"

    def _write_record(self) -> None:
        RECORD_DIR.mkdir(parents=True, exist_ok=True)
        rec = {"name": self.name, "netns": self.netns, "workdir": str(self.workdir), "owner": os.getpid(),
               "cgroup_parent": self.cgroup_parent}
        tmp = self._record_path().with_suffix(".tmp")
        tmp.write_text(json.dumps(rec))
        tmp.replace(self._record_path())

    @classmethod
    def reap_stale(cls) -> list[str]:
        """Clean up hosts whose owning process is gone (a run that was SIGKILLed). Returns their netns names."""
        reaped = []
        if not RECORD_DIR.is_dir():
            return reaped
        for rec_path in RECORD_DIR.glob("*.json"):
            try:
                rec = json.loads(rec_path.read_text())
            except (OSError, ValueError):
                continue
            if pid_alive(int(rec.get("owner", 0))) or not rec.get("netns", "").startswith(NETNS_PREFIX):
                continue
            h = cls.__new__(cls)
            cls.__init__(h, rec["name"], Path(rec["workdir"]))
            h.netns = rec["netns"]
            h.cgroup_parent = rec["cgroup_parent"]
            h._stopped = True  # no Popen handles: go straight to the kill-by-netns/cgroup path
            h._netns_created = True
            h.stop()
            reaped.append(h.netns)
        return reaped


