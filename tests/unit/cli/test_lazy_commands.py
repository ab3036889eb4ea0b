"""The CLI imports a command's module only when that command runs: `vmgen status`, which tests
and users poll, does not pay for `launch`'s libraries. The table of commands stays complete."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

from click.testing import CliRunner

from vmgen.cli import main
from vmgen.laptop.cli import COMMANDS


def test_every_command_module_registers_exactly_the_commands_the_table_names() -> None:
    modules = {where.split(":")[0] for where in COMMANDS.values()}
    for module in modules:
        importlib.import_module(f"vmgen.laptop.cli.{module}")
    registered = {name for name in main.commands if name != "vmside"}
    assert registered <= set(COMMANDS), registered - set(COMMANDS)
    for name, where in COMMANDS.items():
        module, attribute = where.split(":")
        assert getattr(importlib.import_module(f"vmgen.laptop.cli.{module}"), attribute).name == name


def test_help_lists_every_command_and_each_one_answers_its_help() -> None:
    shown = CliRunner().invoke(main, ["--help"])
    assert shown.exit_code == 0, shown.output
    for name in [*COMMANDS, "vmside"]:
        assert f"  {name} " in shown.output or f"  {name}\n" in shown.output, name
        assert CliRunner().invoke(main, [name, "--help"]).exit_code == 0, name


def test_status_imports_neither_the_other_commands_nor_the_vm_side() -> None:
    probe = (
        "import json, sys\n"
        "from vmgen.cli import main\n"
        "try:\n"
        "    main(['status', 'no-such-workspace'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert "vmgen.laptop.cli.watchdog" in loaded
    others = {f"vmgen.laptop.cli.{w.split(':')[0]}" for w in COMMANDS.values()} - {"vmgen.laptop.cli.watchdog"}
    assert not loaded & others, loaded & others
    assert "vmgen.vmside.cli" not in loaded
