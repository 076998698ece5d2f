"""The UDP 4789 probe between pynet processes: does a datagram to a peer's VXLAN port reach it?

Design note.  A ping proves nothing about UDP 4789 (ICMP takes other rules), and a UDP echo on a port of
pynet's own proves nothing either: a firewall that drops 4789 lets it through.  The probe therefore goes
to the VXLAN port itself.  The kernel's VXLAN socket owns that port, so pynet cannot bind it; but a raw
IPPROTO_UDP socket receives a copy of every UDP datagram the host accepts -- *after* the INPUT hooks, so a
datagram the firewall dropped never reaches it -- and a classic BPF filter in the kernel lets only pynet's
probes through (nothing of the real VXLAN traffic is copied to user space).  The probe carries a header
with the VXLAN "I" flag clear, which the kernel's VXLAN receive path drops as invalid: it never reaches a
bridge.  The responder answers from port 4789 to the prober's port, so the reply is the return leg of the
prober's conntrack entry, and a firewall that accepts only established traffic passes it.

Sent from this host's VTEP address, a probe passes the member filter (issue 11: VXLAN only from member
VTEPs) exactly when real VXLAN from this host would: a probe that is answered means the peer takes this
host's tunnel traffic.  IPv4 VTEPs only (pynet's VTEPs are IPv4).  Needs CAP_NET_RAW (root, or the managed
plugin's capability list).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import time

NAME = "vxlan-probe"  # its background loop
VXLAN_PORT = 4789
PROBE = b"PYNE" b"TPRB"  # after an 8-byte header whose flags are 0: an invalid VXLAN packet
ANSWER = b"PYNETACK"
HEADER = b"\x00" * 8
NONCE = 16
_SO_ATTACH_FILTER = 26
IP_UDP = 28  # IPv4 header without options + UDP header
IP_MTU_DISCOVER = 10
IP_PMTUDISC_PROBE = 3  # set DF and ignore the cached path MTU: the probe measures the path itself


def _bpf() -> bytes:
    """Only IPv4 UDP datagrams to port 4789 whose payload starts with PROBE's first 4 bytes after the
    8-byte header; everything else is never copied to the socket."""
    magic = struct.unpack("!I", PROBE[:4])[0]
    code = [
        (0xb1, 0, 0, 0),            # ldxb 4*([0]&0xf)      X = IP header length
        (0x48, 0, 0, 2),            # ldh [x+2]             UDP destination port
        (0x15, 0, 3, VXLAN_PORT),   # jeq #4789 ? next : drop
        (0x40, 0, 0, 16),           # ld [x+16]             first word after UDP (8) + header (8)
        (0x15, 0, 1, magic),        # jeq #magic ? accept : drop
        (0x06, 0, 0, 0x40000),      # ret accept
        (0x06, 0, 0, 0),            # ret drop
    ]
    return b"".join(struct.pack("HBBI", *c) for c in code)


def _checked_v4(address: str) -> str:
    ip = ipaddress.ip_address(address)
    if ip.version != 4:
        raise ValueError(f"{address} is not an IPv4 VTEP")
    return str(ip)


class Responder:
    """Answers probes sent to ``vtep``:4789; run ``serve(ctx)`` under the supervisor."""

    def __init__(self, vtep: str) -> None:
        self.vtep = _checked_v4(vtep)
        self.answered = 0

    def open(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
        try:
            prog = _bpf()
            buf = bytearray(prog)
            import ctypes

            addr = ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))
            sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, struct.pack("HL", len(prog) // 8, addr))
            sock.bind((self.vtep, 0))
            sock.settimeout(1.0)  # so the loop sees the supervisor stopping
            self._keep = buf  # the filter's bytes must outlive the setsockopt call
            return sock
        except BaseException:
            sock.close()
            raise

    def serve(self, ctx) -> None:
        sock = self.open()
        try:
            ctx.ok()
            while not ctx.stopping.is_set():
                try:
                    packet, (source, _) = sock.recvfrom(2048)
                except socket.timeout:
                    continue
                reply = answer(packet)
                if reply is not None:
                    sock.sendto(reply, (source, 0))
                    self.answered += 1
        finally:
            sock.close()


def answer(packet: bytes) -> bytes | None:
    """The UDP datagram (header + payload) answering the IPv4 ``packet`` if it is a probe, else None.
    Pure: the responder's parsing, tested without sockets."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    udp = packet[ihl:]
    if len(udp) < 8 + len(HEADER) + len(PROBE) + NONCE:
        return None
    sport, dport = struct.unpack("!HH", udp[:4])
    body = udp[8:]
    if dport != VXLAN_PORT or body[:8] != HEADER or body[8:16] != PROBE:
        return None
    payload = ANSWER + body[16:16 + NONCE]
    return struct.pack("!HHHH", VXLAN_PORT, sport, 8 + len(payload), 0) + payload  # checksum 0: none (IPv4)


def probe(source: str, peer: str, timeout: float = 1.0, tries: int = 3, size: int = 0) -> float | None:
    """Round-trip seconds of a probe from ``source`` (this host's VTEP) to ``peer``:4789, None when no
    answer came in ``tries`` attempts of ``timeout`` seconds each (bounded: at most tries * timeout).

    With ``size``, the probe is an IP packet of exactly that many bytes with DF set (the path MTU check:
    an overlay frame of MTU bytes is MTU + 50 on the underlay); OSError (EMSGSIZE) when this host's own
    route already refuses that size."""
    source, peer = _checked_v4(source), _checked_v4(peer)
    padding = max(0, size - IP_UDP - len(HEADER) - len(PROBE) - NONCE) if size else 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        if size:
            sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)  # DF, no fragments
        sock.bind((source, 0))
        for _ in range(tries):
            nonce = os.urandom(NONCE)
            started = time.monotonic()
            sock.sendto(HEADER + PROBE + nonce + b"\0" * padding, (peer, VXLAN_PORT))
            deadline = started + timeout
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data, (sender, port) = sock.recvfrom(256)
                except socket.timeout:
                    break
                if sender == peer and port == VXLAN_PORT and data == ANSWER + nonce:
                    return time.monotonic() - started
    return None
