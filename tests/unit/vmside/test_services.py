"""What `vmgen open` may open, read on the VM: no code UI without a domain, one still installing
(with its step), one ready; a desktop only when launched with one."""

from __future__ import annotations

import json
import time

import pytest

from vmgen.contract.names import UNITS, VmPaths
from vmgen.vmside.services import web_services


@pytest.fixture
def vm(tmp_path) -> VmPaths:
    paths = VmPaths(etc=tmp_path / "etc", state=tmp_path / "lib", log=tmp_path / "log", systemd=tmp_path / "units")
    for folder in (paths.etc, paths.state, paths.log, paths.systemd):
        folder.mkdir()
    paths.workspace_info.write_text(json.dumps({"name": "app", "desktop": False}))
    return paths


def test_without_a_domain_there_is_no_code_ui_and_without_desktop_none(vm) -> None:
    services = web_services(vm)
    assert (services.code_ui, services.desktop) == ("absent", False)
    vm.workspace_info.write_text(json.dumps({"name": "app", "desktop": True}))
    assert web_services(vm).desktop


def test_a_code_ui_still_installing_says_how_far(vm) -> None:
    vm.unit(UNITS.code_ui_install).write_text("[Service]\n")
    started = time.time() - 90
    vm.phases_log.write_text(f"vmgen-phase {started - 30:.3f} done\nvmgen-phase {started:.3f} code-ui-install\n")
    services = web_services(vm)
    assert (services.code_ui, services.code_ui_step) == ("installing", "code-ui-install")
    assert services.code_ui_step_at == pytest.approx(started, abs=0.01)
    vm.code_ui_ready.write_text("")
    assert web_services(vm).code_ui == "ready"
