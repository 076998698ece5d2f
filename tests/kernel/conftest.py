"""Kernel tier: real netlink and iptables, each test in a throwaway network namespace."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

pytestmark = pytest.mark.root


@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.skip("kernel tests need root")
    name = f"pnt-k-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def ipr(netns):
    from pynet.driver.kernel.links import open_handle

    handle = open_handle(netns)
    try:
        yield handle
    finally:
        handle.close()


@pytest.fixture
def links(ipr):
    from pynet.driver.kernel.links import Links

    return Links(ipr)


def ns_run(netns: str, *argv: str, check: bool = True) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, *argv], check=check, capture_output=True,
                          text=True).stdout
