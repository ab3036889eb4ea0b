"""The refusal policy for dev containers: what a devcontainer.json (or a feature, or the CLI's
merged configuration) may ask of the VM, and the one line that names the field and the setting."""

from __future__ import annotations

import pytest

from vmgen.contract.devcontainer import ALLOW_SETTING, Host, refusals

HOST = Host(workspace_folder="/home/agent/work/app", environment={"HOME": "/home/agent"})


def refused(config: dict) -> list[tuple[str, str]]:
    return [(r.field, r.gives) for r in refusals(config, HOST)]


def test_a_usual_devcontainer_is_not_refused() -> None:
    config = {
        "name": "app",
        "build": {"dockerfile": "Dockerfile", "args": {"VARIANT": "3.12"}},
        "features": {"ghcr.io/devcontainers/features/node:1": {}},
        "capAdd": ["SYS_PTRACE"],
        "runArgs": ["--init", "-e", "X=1", "--name=app", "-p", "3000:3000"],
        "mounts": [
            "source=app-cache,target=/cache,type=volume",
            {"type": "volume", "source": "node_modules", "target": "/w/node_modules"},
            "source=${localEnv:HOME}/.gitconfig,target=/root/.gitconfig,type=bind",
            "type=bind,source=${localWorkspaceFolder}/data,target=/data",
            "type=tmpfs,target=/etc",
        ],
        "workspaceMount": "source=${localWorkspaceFolder},target=/workspace,type=bind",
        "privileged": False,
        "securityOpt": ["label=disable"],
        "postCreateCommand": "make deps",
    }
    assert refused(config) == []


@pytest.mark.parametrize(
    "config, field",
    [
        ({"privileged": True}, "privileged"),
        ({"capAdd": ["SYS_ADMIN"]}, "capAdd"),
        ({"capAdd": ["cap_sys_module"]}, "capAdd"),
        ({"capAdd": ["ALL"]}, "capAdd"),
        ({"securityOpt": ["seccomp=unconfined"]}, "securityOpt"),
        ({"securityOpt": ["apparmor:unconfined"]}, "securityOpt"),
        ({"runArgs": ["--privileged"]}, "runArgs[0]"),
        ({"runArgs": ["--init", "--privileged=true"]}, "runArgs[1]"),
        ({"runArgs": ["--pid=host"]}, "runArgs[0]"),
        ({"runArgs": ["--pid", "host"]}, "runArgs[0]"),
        ({"runArgs": ["--network=host"]}, "runArgs[0]"),
        ({"runArgs": ["--net", "HOST"]}, "runArgs[0]"),
        ({"runArgs": ["--userns=host"]}, "runArgs[0]"),
        ({"runArgs": ["--ipc=host"]}, "runArgs[0]"),
        ({"runArgs": ["--cap-add=SYS_ADMIN"]}, "runArgs[0]"),
        ({"runArgs": ["--cap-add", "NET_ADMIN,SYS_PTRACE"]}, "runArgs[0]"),
        ({"runArgs": ["--security-opt", "seccomp=unconfined"]}, "runArgs[0]"),
        ({"runArgs": ["--device=/dev/kvm"]}, "runArgs[0]"),
        ({"runArgs": ["-v", "/:/host"]}, "runArgs[0]"),
        ({"runArgs": ["-v/etc:/host-etc"]}, "runArgs[0]"),
        ({"runArgs": ["-itv", "/root:/r"]}, "runArgs[0]"),
        ({"runArgs": ["--volume=/var/run/docker.sock:/var/run/docker.sock"]}, "runArgs[0]"),
        ({"runArgs": ["--mount", "type=bind,source=/run,target=/r"]}, "runArgs[0]"),
        ({"mounts": ["source=/var/run/docker.sock,target=/var/run/docker.sock,type=bind"]}, "mounts[0]"),
        ({"mounts": [{"type": "bind", "source": "/", "target": "/host"}]}, "mounts[0]"),
        ({"mounts": ["type=bind,src=/etc/vmgen,dst=/x"]}, "mounts[0]"),
        ({"mounts": ["TYPE=BIND,SOURCE=/root,TARGET=/x"]}, "mounts[0]"),
        ({"mounts": ["type=bind,source=/var,target=/x"]}, "mounts[0]"),
        ({"mounts": ["type=bind,source=${localWorkspaceFolder}/../../../../etc,target=/x"]}, "mounts[0]"),
        ({"mounts": ["type=bind,source=${localEnv:NOPE:/root},target=/x"]}, "mounts[0]"),
        ({"mounts": ["type=bind,source=//etc/,target=/x"]}, "mounts[0]"),
        ({"workspaceMount": "source=/,target=/workspace,type=bind"}, "workspaceMount"),
    ],
)
def test_each_request_that_gives_the_vm_away_is_refused_by_its_field(config: dict, field: str) -> None:
    assert [f for f, _ in refused(config)] == [field]


def test_tricks_that_hide_a_mount_from_a_naive_reading_are_seen_as_docker_reads_them() -> None:
    # Docker reads the --mount string as CSV and the last source wins; the CLI turns a mount
    # object into `type=T,src=S,dst=D` without quoting, so a comma in the object's source adds a key.
    assert refused({"mounts": ['type=bind,"source=/etc",target=/x']}) == [("mounts[0]", "the VM's /etc")]
    assert refused({"mounts": ["type=bind,source=/tmp/ok,src=/root,target=/x"]}) == [("mounts[0]", "the VM's /root")]
    assert refused({"mounts": [{"type": "bind", "source": "/tmp/ok,source=/root", "target": "/x"}]}) == [
        ("mounts[0]", "the VM's /root")
    ]
    assert refused({"mounts": [{"type": "volume,type=bind", "source": "/etc", "target": "/x"}]}) == [
        ("mounts[0]", "the VM's /etc")
    ]


def test_flags_that_take_a_value_consume_it_as_docker_does() -> None:
    # `--env --privileged` is an environment variable named --privileged to Docker: nothing to
    # refuse; an unknown flag stands alone, so the argument after it is still read as a flag.
    assert refused({"runArgs": ["--env", "--privileged"]}) == []
    assert refused({"runArgs": ["--some-new-flag", "--privileged"]}) == [
        ("runArgs[1]", "every capability and every device of the VM")
    ]
    assert refused({"runArgs": ["--privileged=false", "-v", "/data"]}) == []


def test_a_mount_of_a_folder_above_a_sensitive_one_is_refused_too() -> None:
    (field, gives), *_ = refused({"mounts": ["type=bind,source=/,target=/host"]})
    assert field == "mounts[0]" and gives.startswith("the VM's / with its ")


def test_the_line_names_the_field_the_value_and_the_setting() -> None:
    (first,) = refusals({"runArgs": ["--pid=host"]}, HOST)
    line = first.line(".devcontainer/devcontainer.json")
    assert line == (
        '.devcontainer/devcontainer.json: runArgs[0] "--pid=host" would give the dev container the VM\'s '
        f"processes; refused unless {ALLOW_SETTING} = true"
    )
    assert "\n" not in line


def test_a_value_is_shown_cut_and_without_control_characters() -> None:
    (first,) = refusals({"capAdd": ["SYS_ADMIN\x1b[2J" + "X" * 500]}, HOST)
    assert "\x1b" not in first.value and len(first.value) < 140


def test_fields_of_the_wrong_shape_are_ignored_not_crashed_on() -> None:
    assert refused({"privileged": "no", "capAdd": 3, "runArgs": {"a": 1}, "mounts": [None, 5]}) == []
    assert refused({"privileged": "true"}) == [("privileged", "every capability and every device of the VM")]
