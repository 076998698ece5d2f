"""The few Docker Engine API calls pynet makes: from background threads and the CLI, never a handler.

A request handler must never call these: dockerd is waiting for the handler's answer and may hold locks
the API call needs (the guide's deadlock rule).  Every call is bounded: the connect by CONNECT_TIMEOUT,
the whole exchange after it by ``timeout`` (unixhttp.request's ``total``: a dockerd that accepts and
never answers, or answers a byte at a time, costs that long and no more), the answer by MAX_ANSWER.
``timeout`` is generous because creating a network makes dockerd call the plugin (pynet itself) first.

The API version is negotiated, never pinned: the first call asks ``GET /version`` (a path every dockerd
answers unversioned) and uses the daemon's own ``ApiVersion`` from then on -- dockerd 29.0-29.2 refuse
anything below 1.44, 20.10 knows nothing above 1.41.  Daemons older than MIN_API (dockerd 20.10) are
refused by name.  A connection failure forgets the version, so an upgraded dockerd is asked again.
"""

from __future__ import annotations

import http.client
import json
import re
import threading

from pynet import unixhttp

MIN_API = (1, 41)  # dockerd 20.10
TIMEOUT = 30.0  # seconds for one call once connected
CONNECT_TIMEOUT = 5.0  # seconds to connect (a local socket answers at once, or is not there)
MAX_ANSWER = 16 << 20  # bytes: GET /networks of a big host is well under this
_VERSION = re.compile(r"^(\d{1,2})\.(\d{1,3})$")


class DockerApiError(Exception):
    pass


class DockerApi:
    def __init__(self, docker_host: str, timeout: float = TIMEOUT, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.docker_host = docker_host
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._version = ""
        self._lock = threading.Lock()

    # -- transport ---------------------------------------------------------------------
    def _raw(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        try:
            conn = unixhttp.connection(self.docker_host, self.connect_timeout)
            return unixhttp.request(conn, method, path, body, total=self.timeout, limit=MAX_ANSWER)
        except TimeoutError:
            self._version = ""
            raise DockerApiError(f"Docker at {self.docker_host} did not answer {method} {path} within "
                                 f"{self.timeout:g} s (connect: {self.connect_timeout:g} s)") from None
        except (OSError, http.client.HTTPException, ValueError) as e:
            self._version = ""
            raise DockerApiError(f"cannot reach Docker at {self.docker_host}: {e}") from None

    def api_version(self) -> str:
        """The version this client speaks to the daemon ("1.41", "1.55", ...), negotiated once."""
        with self._lock:
            if not self._version:
                status, raw = self._raw("GET", "/version")
                try:
                    doc = json.loads(raw)
                    version = str(doc.get("ApiVersion", ""))
                except (ValueError, AttributeError):
                    doc, version = {}, ""
                match = _VERSION.match(version)
                if status != 200 or not match:
                    raise DockerApiError(f"Docker at {self.docker_host} answered GET /version with HTTP {status} "
                                         f"and no API version: {unixhttp.error_text(raw)}")
                if (int(match.group(1)), int(match.group(2))) < MIN_API:
                    raise DockerApiError(f"Docker at {self.docker_host} speaks API {version}; pynet needs "
                                         f"{MIN_API[0]}.{MIN_API[1]} or newer (dockerd 20.10+)")
                self._version = version
            return self._version

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
        """(status, decoded JSON or error text) of ``method /v<negotiated><path>``."""
        status, raw = self._raw(method, f"/v{self.api_version()}{path}", body)
        if status >= 400:
            return status, unixhttp.error_text(raw)
        try:
            return status, json.loads(raw) if raw.strip() else None
        except ValueError:
            raise DockerApiError(f"unexpected answer from Docker to {method} {path}") from None

    # -- networks ----------------------------------------------------------------------
    def network(self, network_id: str) -> dict | None:
        """``GET /networks/{id}`` (with containers), None if Docker does not know it."""
        status, doc = self.call("GET", f"/networks/{network_id}")
        if status == 404:
            return None
        if status != 200 or not isinstance(doc, dict):
            raise DockerApiError(f"GET /networks/{network_id[:12]}: HTTP {status}: {doc}")
        return doc

    def network_names(self) -> dict[str, str]:
        """name -> id of every network Docker knows."""
        status, doc = self.call("GET", "/networks")
        if status != 200 or not isinstance(doc, list):
            raise DockerApiError(f"GET /networks: HTTP {status}: {doc}")
        return {n.get("Name", ""): n.get("Id", "") for n in doc if isinstance(n, dict)}

    def create_network(self, body: dict) -> str:
        status, doc = self.call("POST", "/networks/create", body)
        if status != 201 or not isinstance(doc, dict):
            raise DockerApiError(f"creating network {body.get('Name')!r}: HTTP {status}: {doc}")
        return str(doc.get("Id", ""))

    def remove_network(self, network_id: str) -> bool:
        """True if removed, False if Docker no longer knows it; DockerApiError with dockerd's reason
        when it refuses (e.g. still in use)."""
        status, doc = self.call("DELETE", f"/networks/{network_id}")
        if status == 404:
            return False
        if status not in (200, 204):
            raise DockerApiError(f"removing network {network_id[:12]}: HTTP {status}: {doc}")
        return True

    # -- containers (the cluster DNS's names) --------------------------------------------
    def containers(self) -> list[dict]:
        """``GET /containers/json``: the running containers, with their networks' endpoint ids."""
        status, doc = self.call("GET", "/containers/json")
        if status != 200 or not isinstance(doc, list):
            raise DockerApiError(f"GET /containers/json: HTTP {status}: {doc}")
        return [c for c in doc if isinstance(c, dict)]

    def container(self, container_id: str) -> dict | None:
        """``GET /containers/{id}/json``, None if Docker does not know it (any more)."""
        status, doc = self.call("GET", f"/containers/{container_id}/json")
        if status == 404:
            return None
        if status != 200 or not isinstance(doc, dict):
            raise DockerApiError(f"GET /containers/{container_id[:12]}/json: HTTP {status}: {doc}")
        return doc
