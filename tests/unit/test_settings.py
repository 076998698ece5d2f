from pynet.plugin.settings import resolve


def test_flags_over_environment_over_defaults():
    env = {"PYNET_SOCKET": "/env/x.sock", "PYNET_LOG_LEVEL": "debug"}
    s = resolve({"socket": None, "state_dir": "/flag/state"}, env)
    assert (s.socket, s.state_dir, s.log_level) == ("/env/x.sock", "/flag/state", "debug")
    assert s.driver_name == "x"
    assert resolve({"socket": "/a/pynet.sock"}, env).socket == "/a/pynet.sock"
    assert resolve({}, {}).socket == "/run/docker/plugins/pynet.sock"
