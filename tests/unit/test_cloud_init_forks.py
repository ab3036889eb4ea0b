"""The unit tests' forked `cloud-init` (tests/cloud_init_forks.py) answers as the installed one:
the same exit code and the same words, for a rendered user-data and for a broken one."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.unit.builder.test_render import make_spec, render


def test_the_forked_cloud_init_answers_as_the_installed_one(
    cloud_init_shim: Path | None, forked_cloud_init: str, tmp_path: Path
) -> None:
    real = shutil.which("cloud-init", path=forked_cloud_init)
    assert real and cloud_init_shim is not None, "cloud-init is installed (a Python console script)"
    assert shutil.which("cloud-init") == str(cloud_init_shim / "cloud-init")
    rendered, broken = tmp_path / "rendered", tmp_path / "broken"
    rendered.write_text(render(make_spec()))
    broken.write_text("#cloud-config\nusers: 12\npackages: {a: 1}\n")
    for config, code in ((rendered, 0), (broken, 1)):
        answers = [
            subprocess.run([program, "schema", "--config-file", config.name], cwd=tmp_path, capture_output=True)
            for program in (real, "cloud-init")
        ]
        assert [a.returncode for a in answers] == [code, code], answers
        assert answers[0].stdout == answers[1].stdout and answers[0].stderr == answers[1].stderr, answers
