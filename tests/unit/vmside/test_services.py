"""What `vmgen open` may open, read on the VM: no code UI without a domain, one still installing
(with its step), one ready; a desktop only when launched with one."""

from __future__ import annotations

import json
import time

import pytest

from vmgen.contract.names import UNITS, VmPaths
from vmgen.vmside.services import code_ui_progress, web_services


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


def test_the_page_says_how_far_the_code_ui_install_is_in_words_and_when_it_failed(vm) -> None:
    assert code_ui_progress(vm) == {"state": "absent"}
    vm.unit(UNITS.code_ui_install).write_text("[Service]\n")
    started = time.time() - 40
    vm.phases_log.write_text(
        f"vmgen-phase {started - 5:.3f} code-ui-install\nvmgen-phase {started:.3f} code-ui-compile\n"
    )
    shown = code_ui_progress(vm)
    assert shown["state"] == "installing" and "compiling" in str(shown["step"])
    assert shown["since"] == pytest.approx(started, abs=0.01)
    # The install unit's ExecStopPost writes its failure to the phase log.
    with vm.phases_log.open("a") as log:
        log.write(f"vmgen-phase {time.time():.3f} code-ui-failed\n")
    shown = code_ui_progress(vm)
    assert shown["state"] == "failed" and shown["log"] == str(vm.code_ui_log)
    vm.code_ui_ready.write_text("")
    assert code_ui_progress(vm) == {"state": "ready"}
