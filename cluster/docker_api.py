"""The few Docker Engine API calls the cluster agent makes, from background threads only.

A request handler must never call these: dockerd is waiting for the handler's
answer and may hold locks the API call needs (the guide's deadlock rule).
"""

from __future__ import annotations

import http.client
import json

from pynet import unixhttp

API = "/v1.41"  # dockerd 20.10+ speaks it; nothing newer is needed
TIMEOUT = 30.0


class DockerApiError(Exception):
    pass


class DockerApi:
    def __init__(self, docker_host: str, timeout: float = TIMEOUT) -> None:
        self.docker_host = docker_host
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
        try:
            status, raw = unixhttp.request(unixhttp.connection(self.docker_host, self.timeout),
                                           method, API + path, body)
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise DockerApiError(f"cannot reach Docker at {self.docker_host}: {e}") from None
        if status >= 400:
            return status, unixhttp.error_text(raw)
        try:
            return status, json.loads(raw) if raw.strip() else None
        except ValueError:
            raise DockerApiError(f"unexpected answer from Docker to {method} {path}") from None

    def network(self, network_id: str) -> dict | None:
        """``GET /networks/{id}`` (with containers), None if Docker does not know it."""
        status, doc = self._call("GET", f"/networks/{network_id}")
        if status == 404:
            return None
        if status != 200 or not isinstance(doc, dict):
            raise DockerApiError(f"GET /networks/{network_id[:12]}: HTTP {status}: {doc}")
        return doc

    def network_names(self) -> dict[str, str]:
        """name -> id of every network Docker knows."""
        status, doc = self._call("GET", "/networks")
        if status != 200 or not isinstance(doc, list):
            raise DockerApiError(f"GET /networks: HTTP {status}: {doc}")
        return {n.get("Name", ""): n.get("Id", "") for n in doc if isinstance(n, dict)}

    def create_network(self, body: dict) -> str:
        status, doc = self._call("POST", "/networks/create", body)
        if status != 201 or not isinstance(doc, dict):
            raise DockerApiError(f"creating network {body.get('Name')!r}: HTTP {status}: {doc}")
        return str(doc.get("Id", ""))

    def remove_network(self, network_id: str) -> bool:
        """True if removed, False if Docker no longer knows it; DockerApiError with dockerd's reason
        when it refuses (e.g. still in use)."""
        status, doc = self._call("DELETE", f"/networks/{network_id}")
        if status == 404:
            return False
        if status not in (200, 204):
            raise DockerApiError(f"removing network {network_id[:12]}: HTTP {status}: {doc}")
        return True


def create_request(inspected: dict, overlay: str, origin: str) -> dict:
    """The NetworkCreateRequest that re-creates ``inspected`` (the origin's network) on another host.

    Aux addresses are left out: the pool is shared, so the origin's reservation
    already keeps them out of every host's allocations.
    """
    ipam = inspected.get("IPAM") or {}
    config = []
    for c in ipam.get("Config") or []:
        config.append({k: c[k] for k in ("Subnet", "IPRange", "Gateway") if c.get(k)})
    options = dict(inspected.get("Options") or {})
    options["pynet.mode"] = "overlay"
    options["pynet.overlay"] = overlay
    labels = dict(inspected.get("Labels") or {})
    labels["org.pynet.overlay.origin"] = origin
    return {
        "Name": inspected.get("Name", overlay),
        "CheckDuplicate": True,
        "Driver": inspected.get("Driver", "pynet"),
        "Internal": bool(inspected.get("Internal")),
        "EnableIPv6": bool(inspected.get("EnableIPv6")),
        "Attachable": bool(inspected.get("Attachable")),
        "IPAM": {"Driver": ipam.get("Driver") or "default", "Options": ipam.get("Options") or {}, "Config": config},
        "Options": options,
        "Labels": labels,
    }
