"""`pynet ports`: joining pynet's rows with Docker's names, filtering, formatting (no sockets but tmp ones)."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import pytest

from pynet.plugin import ports_cli as pc

NET_F = "f" * 63 + "1"
NET_B = "b" * 63 + "2"
CTR_WEB = "c0ffee" + "0" * 58
CTR_API = "abcdef" + "1" * 58
EP_WEB_F = "e1" * 32
EP_WEB_B = "e2" * 32
EP_API = "e3" * 32
EP_GONE = "e4" * 32

NETWORKS = [
    {"Id": NET_F, "Name": "frontend", "Driver": "pynet",
     "Containers": {CTR_WEB: {"Name": "web", "EndpointID": EP_WEB_F, "IPv4Address": "10.200.0.2/24"}}},
    {"Id": NET_B, "Name": "backend", "Driver": "pynet",
     "Containers": {CTR_WEB: {"Name": "web", "EndpointID": EP_WEB_B},
                    CTR_API: {"Name": "api", "EndpointID": EP_API}}},
]


def port(net, ep, proto, host_ip, host_port, ctr_ip, ctr_port):
    return {"NetworkID": net, "EndpointID": ep, "Proto": proto, "HostIP": host_ip, "HostPort": host_port,
            "ContainerIP": ctr_ip, "ContainerPort": ctr_port}


PORTS = [
    port(NET_F, EP_WEB_F, "udp", "0.0.0.0", 5002, "10.200.0.2", 5000),
    port(NET_F, EP_WEB_F, "tcp", "127.0.0.1", 5001, "10.200.0.2", 5000),
    port(NET_F, EP_WEB_F, "tcp", "0.0.0.0", 5000, "10.200.0.2", 5000),
    port(NET_F, EP_WEB_F, "tcp", "::", 5000, "fd00:1::2", 5000),
    port(NET_B, EP_API, "tcp", "0.0.0.0", 8080, "10.201.0.3", 80),
]


def test_join_names_and_sorts():
    rows = pc.join(PORTS, NETWORKS)
    assert [(r.container, r.network, r.proto, r.host, r.target) for r in rows] == [
        ("api", "backend", "tcp", "0.0.0.0:8080", "10.201.0.3:80"),
        ("web", "frontend", "tcp", "0.0.0.0:5000", "10.200.0.2:5000"),
        ("web", "frontend", "tcp", "[::]:5000", "[fd00:1::2]:5000"),
        ("web", "frontend", "tcp", "127.0.0.1:5001", "10.200.0.2:5000"),
        ("web", "frontend", "udp", "0.0.0.0:5002", "10.200.0.2:5000"),
    ]
    assert rows[0].container_id == CTR_API and rows[0].network_id == NET_B


def test_unknown_endpoint_and_network_fall_back_to_id_prefixes():
    rows = pc.join([port("9" * 64, EP_GONE, "tcp", "0.0.0.0", 1, "10.9.0.2", 2)], NETWORKS)
    assert (rows[0].container, rows[0].network, rows[0].container_id) == (EP_GONE[:12], "9" * 12, "")


def test_index_ignores_junk_and_strips_slash():
    names, eps = pc.index_networks([None, {"Name": "noid"}, {"Id": NET_F, "Name": "x",
                                    "Containers": {CTR_WEB: {"Name": "/web", "EndpointID": EP_WEB_F},
                                                   CTR_API: {"Name": "api"}}}])
    assert names == {NET_F: "x"} and eps == {EP_WEB_F: ("web", CTR_WEB)}
    assert pc.index_networks([{"Id": NET_F, "Containers": None}]) == ({NET_F: NET_F[:12]}, {})


@pytest.mark.parametrize("target,expected", [
    (None, 5),
    ("web", 4),             # container name
    ("backend", 1),         # network name
    ("frontend", 4),
    ("c0ff", 4),            # container ID prefix
    ("ABCDEF", 1),          # ID prefixes are case-insensitive
    ("fff", 4),             # network ID prefix
    ("nothing", 0),
    ("we", 0),              # names match exactly, not by prefix
])
def test_select(target, expected):
    assert len(pc.select(pc.join(PORTS, NETWORKS), target)) == expected


def test_select_prefers_exact_names_over_id_prefixes():
    nets = [{"Id": NET_F, "Name": "frontend", "Containers": {CTR_WEB: {"Name": "bbb", "EndpointID": EP_WEB_F}}},
            {"Id": NET_B, "Name": "backend", "Containers": {CTR_API: {"Name": "api", "EndpointID": EP_API}}}]
    ports = [port(NET_F, EP_WEB_F, "tcp", "0.0.0.0", 1, "10.0.0.2", 1),
             port(NET_B, EP_API, "tcp", "0.0.0.0", 2, "10.0.1.2", 2)]
    rows = pc.select(pc.join(ports, nets), "bbb")  # a name that is also a prefix of backend's ID
    assert [r.container for r in rows] == ["bbb"]


def test_table_is_aligned_with_header():
    out = pc.format_table(pc.join(PORTS[:2], NETWORKS))
    lines = out.splitlines()
    assert lines[0].split() == ["CONTAINER", "NETWORK", "PROTO", "HOST", "CONTAINER"]
    assert lines[1].split() == ["web", "frontend", "tcp", "127.0.0.1:5001", "10.200.0.2:5000"]
    assert lines[0].index("NETWORK") == lines[1].index("frontend")
    assert lines[0].index("HOST") == lines[1].index("127.0.0.1")
    assert pc.format_table([]).splitlines() == ["CONTAINER  NETWORK  PROTO  HOST  CONTAINER"]


def test_json_rows():
    doc = json.loads(pc.format_json(pc.join(PORTS[:1], NETWORKS)))
    assert doc == [{"container": "web", "container_id": CTR_WEB, "network": "frontend", "network_id": NET_F,
                    "endpoint_id": EP_WEB_F, "proto": "udp", "host_ip": "0.0.0.0", "host_port": 5002,
                    "container_ip": "10.200.0.2", "container_port": 5000,
                    "host": "0.0.0.0:5002", "target": "10.200.0.2:5000"}]


def test_docker_connection_forms():
    assert pc.docker_connection("unix:///var/run/docker.sock")._path == "/var/run/docker.sock"
    assert pc.docker_connection("/x.sock")._path == "/x.sock"
    c = pc.docker_connection("tcp://127.0.0.1:2376")
    assert (c.host, c.port) == ("127.0.0.1", 2376)
    with pytest.raises(pc.CliError, match="unsupported Docker host"):
        pc.docker_connection("ssh://me@there")


# ------------------------------------------------------------------------------------------------ main, over tmp sockets
class _UnixHTTPServer(HTTPServer):
    address_family = socket.AF_UNIX

    def server_bind(self):
        self.socket.bind(self.server_address)
        self.server_name, self.server_port = "localhost", 0


def _serve(path, routes):
    """A unix-socket HTTP server answering ``routes[(method, path)] -> (status, body)``; records requests."""
    seen = []

    class H(BaseHTTPRequestHandler):
        def _answer(self):
            n = int(self.headers.get("Content-Length") or 0)
            seen.append((self.command, self.path, self.rfile.read(n)))
            status, body = routes.get((self.command, self.path), (404, {"message": "no such route"}))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer

        def log_message(self, *a):
            pass

        def address_string(self):
            return "unix"

    srv = _UnixHTTPServer(str(path), H)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return srv, seen


@pytest.fixture
def sockets(tmp_path):
    servers = []

    def make(plugin_routes, docker_routes):
        p, d = tmp_path / "pynet.sock", tmp_path / "docker.sock"
        sp, seen_p = _serve(p, plugin_routes)
        sd, seen_d = _serve(d, docker_routes)
        servers.extend([sp, sd])
        return str(p), f"unix://{d}", seen_p, seen_d

    yield make
    for s in servers:
        s.shutdown()
        s.server_close()


def _args(socket_path, docker_host, target=None, as_json=False):
    return SimpleNamespace(target=target, socket=socket_path, docker_host=docker_host, json=as_json)


VERSION = {("GET", "/version"): (200, {"ApiVersion": "1.41", "MinAPIVersion": "1.12"})}


def _docker_routes(api: str = "1.41"):
    routes = {("GET", f"/v{api}/networks/{n['Id']}"): (200, n) for n in NETWORKS}
    return {**routes, ("GET", "/version"): (200, {"ApiVersion": api, "MinAPIVersion": "1.40"})}


def test_main_prints_the_table(sockets, capsys):
    sock, dh, seen_p, seen_d = sockets({("POST", "/Pynet.Ports"): (200, {"Ports": PORTS})}, _docker_routes())
    assert pc.main(_args(sock, dh)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == list(pc.HEADERS) and len(out) == 6
    assert out[2].split() == ["web", "frontend", "tcp", "0.0.0.0:5000", "10.200.0.2:5000"]
    assert seen_p == [("POST", "/Pynet.Ports", b"{}")]
    assert sorted(p for _, p, _ in seen_d) == sorted(["/version"] + [f"/v1.41/networks/{n}" for n in (NET_F, NET_B)])


def test_docker_api_version_is_negotiated_not_pinned(sockets, capsys):
    """dockerd 29.0-29.2 refuse clients below API 1.44: the CLI speaks the daemon's own version."""
    sock, dh, _, seen_d = sockets({("POST", "/Pynet.Ports"): (200, {"Ports": PORTS})}, _docker_routes("1.55"))
    assert pc.main(_args(sock, dh)) == 0
    assert {p for _, p, _ in seen_d} == {"/version"} | {f"/v1.55/networks/{n}" for n in (NET_F, NET_B)}


def test_docker_older_than_20_10_is_refused_by_name(sockets, capsys):
    sock, dh, _, _ = sockets({("POST", "/Pynet.Ports"): (200, {"Ports": PORTS})}, _docker_routes("1.39"))
    assert pc.main(_args(sock, dh)) == 1
    assert "speaks API 1.39; pynet needs 1.41 or newer" in capsys.readouterr().err


def test_main_filters_and_json(sockets, capsys):
    sock, dh, _, _ = sockets({("POST", "/Pynet.Ports"): (200, {"Ports": PORTS})}, _docker_routes())
    assert pc.main(_args(sock, dh, "api", as_json=True)) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(r["container"], r["host"]) for r in doc] == [("api", "0.0.0.0:8080")]


def test_main_unknown_target_exits_1(sockets, capsys):
    sock, dh, _, _ = sockets({("POST", "/Pynet.Ports"): (200, {"Ports": PORTS})}, _docker_routes())
    assert pc.main(_args(sock, dh, "nope")) == 1
    assert "no published ports for nope" in capsys.readouterr().err


def test_main_no_ports_prints_header_only_and_skips_docker(sockets, capsys):
    sock, dh, _, seen_d = sockets({("POST", "/Pynet.Ports"): (200, {"Ports": []})}, {})
    assert pc.main(_args(sock, dh)) == 0
    assert capsys.readouterr().out.split() == list(pc.HEADERS)
    assert seen_d == []


def test_main_network_unknown_to_docker_still_lists(sockets, capsys):
    sock, dh, _, _ = sockets({("POST", "/Pynet.Ports"): (200, {"Ports": PORTS[:1]})}, VERSION)  # networks: 404
    assert pc.main(_args(sock, dh)) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:2] == [EP_WEB_F[:12], NET_F[:12]]


def test_main_plugin_unreachable(tmp_path, capsys):
    assert pc.main(_args(str(tmp_path / "missing.sock"), "unix:///nonexistent")) == 1
    err = capsys.readouterr().err
    assert "cannot reach the pynet plugin" in err and "missing.sock" in err


def test_main_plugin_errors(sockets, capsys):
    sock, dh, _, _ = sockets({("POST", "/Pynet.Ports"): (500, {"Err": "store is down"})}, {})
    assert pc.main(_args(sock, dh)) == 1
    assert "HTTP 500: store is down" in capsys.readouterr().err


def test_main_old_plugin_without_route(sockets, capsys):
    sock, dh, _, _ = sockets({}, {})
    assert pc.main(_args(sock, dh)) == 1
    assert "does not answer /Pynet.Ports" in capsys.readouterr().err


def test_main_docker_unreachable(sockets, tmp_path, capsys):
    sock, _, _, _ = sockets({("POST", "/Pynet.Ports"): (200, {"Ports": PORTS})}, {})
    assert pc.main(_args(sock, f"unix://{tmp_path}/nodocker.sock")) == 1
    assert "cannot reach Docker" in capsys.readouterr().err


def test_defaults_from_environment(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PYNET_SOCKET", str(tmp_path / "env.sock"))
    assert pc.main(SimpleNamespace(target=None, socket=None, docker_host=None, json=False)) == 1
    assert "env.sock" in capsys.readouterr().err
