"""Fault injection for crash tests: stop pynet at a named step, only when a test asks for it.

Design note.  A crash between a record write and the kernel writes is the case crash consistency is
about, and a SIGKILL from outside hits that window only by luck.  So the steps that matter call
``reached(name)``; with ``PYNET_TEST_FAULT=<name>`` in pynet's environment (tests/e2e sets it, nothing
else does) the process SIGKILLs itself -- the gunicorn arbiter first, so no new worker is forked, then
the worker -- exactly there.  ``<name>:stall`` sleeps ``STALL_SECONDS`` instead, for a test that kills
dockerd while pynet is in the middle of a request.  Unset (always, outside tests) it is one dict lookup.

The names: ``endpoint-recorded`` (CreateEndpoint, record written, no link yet), ``endpoint-forgotten``
(DeleteEndpoint, record gone, rules, claims and links not yet), ``network-forgotten`` (DeleteNetwork,
likewise), ``ports-claimed`` (ProgramExternalConnectivity, host ports claimed, not yet recorded),
``ports-unpublished`` (RevokeExternalConnectivity, record cleared, rules and claims not yet).
"""

from __future__ import annotations

import logging
import os
import signal
import time

ENV = "PYNET_TEST_FAULT"
STALL_SECONDS = 60.0
log = logging.getLogger("pynet.faults")


def reached(step: str) -> None:
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    name, _, action = wanted.partition(":")
    if name != step:
        return
    if action == "stall":
        log.warning("fault injection: stalling at %s for %.0f s", step, STALL_SECONDS)
        time.sleep(STALL_SECONDS)
        return
    log.warning("fault injection: SIGKILL at %s", step)
    for handler in logging.getLogger().handlers:
        handler.flush()
    if os.getppid() > 1:
        os.kill(os.getppid(), signal.SIGKILL)  # the arbiter: it would fork a fresh worker at once
    os.kill(os.getpid(), signal.SIGKILL)
