"""Root reading what the agent wrote: through no symlink at any depth, never blocking on a FIFO
or a device, only regular files of the agent, capped, and the same under a swapping race."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from vmgen.contract.documents import LEASE_MAX_SECONDS, Clocks, parse_leases
from vmgen.vmside.agentfs import AgentFiles, UnsafeFile
from vmgen.vmside.idlewatch.humans import read_leases

ME = os.getuid()
SECRET = "root-only secret\n"


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_text(SECRET)
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / ".vmgen").mkdir(parents=True)
    return home


def test_a_regular_file_of_the_agent_is_read(home: Path) -> None:
    (home / ".vmgen/leases.json").write_text("[]")
    assert AgentFiles(ME).read(home / ".vmgen/leases.json", 100) == b"[]"


def test_a_symlink_in_the_last_component_is_refused(home: Path, secret: Path) -> None:
    (home / ".vmgen/leases.json").symlink_to(secret)
    with pytest.raises(UnsafeFile):
        AgentFiles(ME).read(home / ".vmgen/leases.json", 100)


def test_a_symlink_in_any_earlier_component_is_refused(home: Path, secret: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere/leases.json").write_text(SECRET)
    os.rename(home / ".vmgen", home / ".vmgen-real")
    (home / ".vmgen").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafeFile, match="symlink"):
        AgentFiles(ME).read(home / ".vmgen/leases.json", 100)
    with pytest.raises(UnsafeFile):
        AgentFiles(ME).listdir(home / ".vmgen")


def test_a_fifo_a_socket_and_a_device_are_refused_at_once(home: Path) -> None:
    os.mkfifo(home / ".vmgen/fifo")
    (home / ".vmgen/zero").symlink_to("/dev/zero")
    started = time.monotonic()
    for name in ("fifo", "zero"):
        with pytest.raises(UnsafeFile):
            AgentFiles(ME).read(home / ".vmgen" / name, 100)
    with pytest.raises(UnsafeFile):
        AgentFiles(ME).read(Path("/dev/zero"), 100)  # reached without any link: still not a file
    assert time.monotonic() - started < 5  # nothing blocked (a blocked open would hang for ever)


def test_a_file_of_another_owner_is_refused(home: Path) -> None:
    (home / ".vmgen/leases.json").write_text("[]")
    with pytest.raises(UnsafeFile, match="owned by uid"):
        AgentFiles(ME + 1).read(home / ".vmgen/leases.json", 100)


def test_a_file_larger_than_the_cap_is_refused(home: Path) -> None:
    big = home / ".vmgen/leases.json"
    with open(big, "wb") as f:
        f.truncate(2 << 30)  # 2 GiB, sparse
    with pytest.raises(UnsafeFile, match="more than"):
        AgentFiles(ME).read(big, 64 << 10)


def test_swapping_a_file_for_a_link_in_a_loop_never_yields_the_target(home: Path, secret: Path) -> None:
    path = home / ".vmgen/leases.json"
    stop = threading.Event()

    def swap() -> None:
        real, link = home / ".vmgen/real", home / ".vmgen/link"
        while not stop.is_set():
            real.write_text("[]")
            os.replace(real, path)
            link.unlink(missing_ok=True)
            link.symlink_to(secret)
            os.replace(link, path)

    swapper = threading.Thread(target=swap)
    swapper.start()
    files, seen = AgentFiles(ME), set()
    try:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                seen.add(files.read(path, 100))
            except OSError:
                seen.add(b"<refused>")
    finally:
        stop.set()
        swapper.join()
    assert SECRET.encode() not in seen and b"[]" in seen


@pytest.mark.parametrize("until", ["1e999", "Infinity", "NaN", "1e300", "true", '"2099"'])
def test_a_lease_can_never_reach_past_the_cli_cap(until: str) -> None:
    now = 1_000_000.0
    leases = parse_leases(f'[{{"until": {until}, "reason": "forever"}}]', now)
    assert all(now < lease.until <= now + LEASE_MAX_SECONDS for lease in leases)


def test_the_watchdog_reads_a_clamped_lease_and_nothing_through_links(home: Path, secret: Path) -> None:
    path = home / ".vmgen/leases.json"
    path.write_text(json.dumps([{"until": 1e300, "reason": "x\u0007" * 500}]))
    (lease,) = read_leases(path, AgentFiles(ME), monotonic=lambda: 10.0, now=lambda: Clocks(wall=1000.0))
    assert lease.until == 10.0 + LEASE_MAX_SECONDS and len(lease.reason) <= 120 and "\u0007" not in lease.reason
    path.unlink()
    path.symlink_to(secret)
    assert read_leases(path, AgentFiles(ME)) == ()
    path.unlink()
    os.mkfifo(path)
    assert read_leases(path, AgentFiles(ME)) == ()  # returns at once instead of blocking


def test_the_file_watcher_never_enters_a_linked_directory(tmp_path: Path) -> None:
    from vmgen.vmside.idlewatch.files import FileWatcher

    work, outside = tmp_path / "work", tmp_path / "outside"
    (work / "sub").mkdir(parents=True)
    outside.mkdir()
    (work / "link").symlink_to(outside)
    watcher = FileWatcher(work)
    assert watcher.poll() == 0 and watcher.watched_dirs == 2  # work and work/sub, not outside
    (outside / "x").write_text("x")
    assert watcher.poll() == 0
    os.rename(work / "sub", tmp_path / "moved")  # a watched folder becomes a link to elsewhere
    (work / "sub").symlink_to(outside)
    assert watcher.poll() > 0  # the swap itself is a change in the workspace
    (outside / "y").write_text("y")
    assert watcher.poll() == 0 and watcher.watched_dirs == 1
    watcher.close()
