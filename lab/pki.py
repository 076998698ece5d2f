"""Throwaway certificates for tests, made with the ``openssl`` CLI: a CA, server and client certificates.

    pki = Pki(tmp_path / "pki")
    ca = pki.ca("cluster")                                   # ca.pem, ca-key.pem
    server = pki.issue(ca, "etcd", ips=["192.0.2.10"])     # serverAuth + clientAuth, IP SANs
    client = pki.issue(ca, "host-a")                         # clientAuth
    rogue = pki.issue(pki.ca("rogue"), "intruder")           # the same shape from a CA nobody trusts

Design note.  etcd 3.4's JSON gateway dials etcd's own gRPC listener with the server's certificate
(``--cert-file``) as its client certificate, so under ``--client-cert-auth`` that certificate must be
good for clientAuth too: the server certificate carries both usages, or every gateway request fails
with "bad certificate".  Its CN must be no etcd user's name: a gateway request without a token is
taken as coming from that CN.  Client certificates carry no CN (subject ``/O=<name>``): with
``--client-cert-auth`` and auth enabled, the gateway answers every request over a certificate with a
CN "400 CommonName of client sending a request against gateway will be ignored" (etcd
``embed/serve.go``), because it cannot pass that identity on.  Keys are EC P-256 (fast to make, accepted by Go and OpenSSL alike); every
file lives under the given directory, which the caller removes.  Every openssl call is bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from pynet.lab.proc import binary, run

DAYS = 2  # a test run never outlives this; a leaked file is useless soon after


@dataclass(frozen=True)
class Cert:
    """A certificate and its key (PEM files); for a CA, ``cert`` is also the trust anchor to hand out."""

    name: str
    cert: Path
    key: Path


class Pki:
    def __init__(self, workdir: str | Path) -> None:
        self.workdir = Path(workdir)

    def ca(self, name: str) -> Cert:
        """A self-signed CA ``<name>-ca.pem`` / ``<name>-ca-key.pem``."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        cert = Cert(name, self.workdir / f"{name}-ca.pem", self.workdir / f"{name}-ca-key.pem")
        self._key(cert.key)
        self._openssl("req", "-x509", "-new", "-key", cert.key, "-out", cert.cert, "-days", DAYS,
                      "-subj", f"/CN={name} test CA", "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        return cert

    def issue(self, ca: Cert, name: str, ips: Sequence[str] = (), dns: Sequence[str] = (),
              common_name: bool | None = None) -> Cert:
        """A leaf certificate signed by ``ca``.  With ``ips``/``dns`` it is a server certificate
        (CN ``name``, SANs, serverAuth and clientAuth: see the design note); without, a client one
        (subject ``/O=name``, no CN, unless ``common_name``)."""
        cert = Cert(name, self.workdir / f"{name}.pem", self.workdir / f"{name}-key.pem")
        csr = self.workdir / f"{name}.csr"
        ext = self.workdir / f"{name}.ext"
        sans = [f"IP:{ip}" for ip in ips] + [f"DNS:{d}" for d in dns]
        lines = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment"]
        if sans:
            lines += [f"subjectAltName={','.join(sans)}", "extendedKeyUsage=serverAuth,clientAuth"]
        else:
            lines += ["extendedKeyUsage=clientAuth"]
        ext.write_text("\n".join(lines) + "\n")
        self._key(cert.key)
        with_cn = bool(sans) if common_name is None else common_name
        self._openssl("req", "-new", "-key", cert.key, "-out", csr, "-subj", f"/CN={name}" if with_cn else f"/O={name}")
        self._openssl("x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial",
                      "-out", cert.cert, "-days", DAYS, "-extfile", ext)
        csr.unlink()
        ext.unlink()
        return cert

    def _key(self, path: Path) -> None:
        self._openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
        path.chmod(0o600)

    @staticmethod
    def _openssl(*args) -> None:
        run([binary("openssl"), *args], timeout=30)
