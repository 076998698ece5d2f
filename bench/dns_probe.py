"""Runs inside a container's network namespace (``nsenter --net=/proc/PID/ns/net``) for bench/dns.py.

    python -m bench.dns_probe latency SERVER NAME COUNT        one query at a time: every lookup's seconds
    python -m bench.dns_probe qps SERVER NAME SECONDS WINDOW   WINDOW queries in flight: answers per second

Prints one JSON object.  Every loop is bounded by its count or its seconds; each query waits at most 2 s.
(dnslib, the library pynet itself uses.)
"""

from __future__ import annotations

import json
import random
import select
import socket
import sys
import time

from dnslib import QTYPE, RCODE, DNSRecord

TIMEOUT = 2.0


def _query(name: str, qid: int) -> bytes:
    q = DNSRecord.question(name, "A")
    q.header.id = qid
    return q.pack()


def latency(server: str, name: str, count: int) -> dict:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(TIMEOUT)
    s.connect((server, 53))
    samples, failures, answers = [], 0, set()
    for _ in range(count):
        qid = random.randrange(65536)
        t0 = time.perf_counter()
        s.send(_query(name, qid))
        try:
            while True:
                wire = s.recv(4096)
                if wire[:2] == qid.to_bytes(2, "big"):
                    break
        except (socket.timeout, TimeoutError):
            failures += 1
            continue
        samples.append(time.perf_counter() - t0)
        r = DNSRecord.parse(wire)
        if r.header.rcode != RCODE.NOERROR or not r.rr:
            failures += 1
        else:
            answers |= {str(rr.rdata) for rr in r.rr if rr.rtype == QTYPE.A}
    return {"samples_s": samples, "failures": failures, "answers": sorted(answers)}


def qps(server: str, name: str, seconds: float, window: int) -> dict:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((server, 53))
    s.setblocking(False)
    wires = [_query(name, i) for i in range(65536)]
    sent = answered = 0
    inflight: dict[int, float] = {}
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        now = time.monotonic()
        for qid, t in list(inflight.items()):
            if now - t > TIMEOUT:
                del inflight[qid]  # lost: counted as sent, not answered
        while len(inflight) < window:
            qid = sent % 65536
            s.send(wires[qid])
            inflight[qid] = now
            sent += 1
        if select.select([s], [], [], 0.05)[0]:
            while True:
                try:
                    wire = s.recv(4096)
                except BlockingIOError:
                    break
                if inflight.pop(int.from_bytes(wire[:2], "big"), None) is not None:
                    answered += 1
    return {"seconds": seconds, "window": window, "sent": sent, "answered": answered,
            "qps": answered / seconds}


if __name__ == "__main__":
    mode, server, name, n = sys.argv[1:5]
    if mode == "latency":
        out = latency(server, name, int(n))
    else:
        out = qps(server, name, float(n), int(sys.argv[5]))
    print(json.dumps(out))
