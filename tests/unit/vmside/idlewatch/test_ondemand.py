"""A verdict on demand: root's control handler signals the running watchdog, which ticks at
once (not at its next interval) and writes its state; a signal that arrives before the service
waits for it is lost rather than fatal; an answer that never comes is an error, not a hang."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from tests.polling import wait_until
from vmgen.contract.names import VmPaths
from vmgen.errors import TickUnavailable
from vmgen.vmside.idlewatch.ondemand import TICK_SIGNAL, request_tick

# The real service loop, with a collector that needs no agent, and an interval far longer than
# the test: any second verdict comes from the request.
WATCHDOG = textwrap.dedent("""
    import sys
    from pathlib import Path
    from vmgen.contract.documents import WatchSettings
    from vmgen.contract.names import VmPaths
    from vmgen.vmside.idlewatch import service
    from vmgen.vmside.idlewatch.model import AgentSignals, AgentState, Snapshot
    import time

    class Collector:
        def snapshot(self):
            return Snapshot(at=time.monotonic(), agent=AgentSignals(AgentState.WAITING))

    settings = WatchSettings(name="app", interval_seconds=3600)
    service.Watchdog(settings, Collector(), paths=VmPaths(state=Path(sys.argv[1]))).run()
""")


@pytest.fixture
def watchdog(tmp_path):
    paths = VmPaths(state=tmp_path)
    process = subprocess.Popen([sys.executable, "-c", WATCHDOG, str(tmp_path)])
    try:
        # Its first tick is written after it started waiting for requests.
        assert wait_until(paths.watchdog_state.exists, bool, timeout=30), "the watchdog's first tick"
        yield paths, process
    finally:
        process.kill()
        process.wait()


def test_a_request_gets_a_verdict_made_now(watchdog):
    paths, process = watchdog
    first = paths.watchdog_state.read_text()
    asked = time.time()
    state = request_tick(paths, pid=process.pid, timeout=30)
    assert state.updated_at >= round(asked, 1) - 0.1 and paths.watchdog_state.read_text() != first
    assert state.agent.state == "waiting"
    assert request_tick(paths, pid=process.pid, timeout=30).updated_at > state.updated_at  # and again


def test_a_request_before_the_service_waits_for_it_is_lost_not_fatal(tmp_path):
    starting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(TickUnavailable, match="did not answer within 1s"):
            request_tick(VmPaths(state=tmp_path), pid=starting.pid, timeout=1)
        assert starting.poll() is None  # the signal's default is to be ignored
    finally:
        starting.kill()
        starting.wait()
    assert TICK_SIGNAL.name == "SIGURG"


def test_no_watchdog_is_said(tmp_path):
    with pytest.raises(TickUnavailable, match="not running"):
        request_tick(VmPaths(state=tmp_path), pid=0)
