"""A tiny authoritative DNS server for tests and the bench: the "outside world's" resolver on the underlay.

    python -m pynet.lab.dnsupstream 192.0.2.10 www.example.test=203.0.113.7 slow.example.test=silent

Answers A queries for the names given (``silent``: never answers, to test timeouts), NXDOMAIN for every
other name, over UDP on ADDRESS:53, until killed.  ``UpstreamDns`` runs it in the lab's underlay netns.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from pynet.lab.proc import binary

SILENT = "silent"


def serve(address: str, names: dict[str, str]) -> None:
    from dnslib import QTYPE, RCODE, RR, A, DNSRecord

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((address, 53))
    while True:
        wire, peer = s.recvfrom(4096)
        try:
            q = DNSRecord.parse(wire)
            name = str(q.q.qname).rstrip(".").lower()
        except Exception:
            continue
        if names.get(name) == SILENT:
            continue
        r = q.reply()
        r.header.aa = 1
        if name in names and q.q.qtype == QTYPE.A:  # other types of the name: no data
            r.add_answer(RR(q.q.qname, QTYPE.A, rdata=A(names[name]), ttl=30))
        elif name not in names:
            r.header.rcode = RCODE.NXDOMAIN
        s.sendto(r.pack(), peer)


class UpstreamDns:
    """The server above in netns ``netns`` (a lab netns we made); stop() ends it."""

    def __init__(self, netns: str, address: str, names: dict[str, str], log_path) -> None:
        argv = [binary("ip"), "netns", "exec", netns, sys.executable, "-m", "pynet.lab.dnsupstream", address,
                *(f"{k}={v}" for k, v in names.items())]
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        time.sleep(0.3)
        if self.proc.poll() is not None:
            raise RuntimeError(f"upstream DNS exited with {self.proc.returncode} (see {log_path})")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


if __name__ == "__main__":
    serve(sys.argv[1], dict(arg.split("=", 1) for arg in sys.argv[2:]))
