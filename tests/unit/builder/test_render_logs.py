"""What the rendered provisioning leaves for people to read (issue 25): the agent's and vmgen's
installs, which run in the background while other phases go on, appear in the provisioning log
under their own phase names, not under the phase that ran meanwhile (the clone); the agent's tmux
server starts with vmgen's settings (focus events on: Claude Code asks for them otherwise)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .test_render import STUBS, files_of, make_spec, render

NPM_SAYS = "added 3 packages in 2s"


def phase_of(log: list[str], line: str) -> str:
    """The phase a line of the provisioning log is filed under: the last phase header before it."""
    at = log.index(line)
    return next(entry.split()[-1] for entry in reversed(log[:at]) if entry.startswith("vmgen-phase "))


def test_the_agents_install_output_is_filed_under_its_own_phase(tmp_path: Path) -> None:
    script = files_of(render(make_spec()))["/usr/local/lib/vmgen/provision.sh"]["content"]
    (tmp_path / "provision.sh").write_text(script)
    (tmp_path / "record").touch()
    npm = f'npm() {{ echo "{NPM_SAYS}"; }}\ncat() {{ /bin/cat "$@"; }}\n'
    result = subprocess.run(
        ["/bin/bash", "-c", STUBS + npm + f"date() {{ echo 1.0; }}\nsource {tmp_path / 'provision.sh'}"],
        env={"RECORD": str(tmp_path / "record"), "PATH": str(tmp_path / "empty")},
        capture_output=True,
        text=True,
        check=False,
    )
    log = result.stdout.splitlines()
    assert result.returncode == 0 and NPM_SAYS in log, result.stdout + result.stderr
    assert phase_of(log, NPM_SAYS) == "agent-install"
    assert log.index("vmgen-phase 1.0 repo") < log.index(NPM_SAYS)  # after the clone, yet not under it


def test_the_agents_tmux_server_starts_with_focus_events_on() -> None:
    files = files_of(render(make_spec()))
    conf = files["/usr/local/lib/vmgen/tmux.conf"]["content"]
    assert "set -g focus-events on" in conf and "source-file -q ~/.tmux.conf" in conf
    session = files["/usr/local/lib/vmgen/agent-session"]["content"]
    assert "tmux -f /usr/local/lib/vmgen/tmux.conf new-session -d -s claude" in session
