"""What a dev container may ask of the VM: the refusal policy, a pure function of a
devcontainer.json as parsed.

The same fields appear in a repository's devcontainer.json, in a local feature's
devcontainer-feature.json, in an image's `devcontainer.metadata` label and in the merged
configuration the devcontainers CLI prints (`devcontainer read-configuration
--include-merged-configuration`), so one function checks them all: the laptop checks the file it
found before anything is created, the VM is to check the CLI's merged view (which includes what
features and base images add) before `devcontainer up`. Compose configurations (`dockerComposeFile`)
carry their privileges in the compose files, which this function does not read.

Refused unless `devcontainer_allow_privileged` is set: `privileged`, a host namespace
(`--pid=host`, `--network=host`, ...), a capability beyond Docker's default set (SYS_PTRACE, which
debuggers need, aside), confinement switched off (`seccomp=unconfined`, `apparmor=unconfined`,
`systempaths=unconfined`), devices, and a bind mount of `/`, `/etc`, `/root`, the engine's socket
or another of the VM's own folders (see `SENSITIVE_PATHS`). See docs/devcontainers.md.

`requested_ports` reads what the configuration asks to reach of the container (`forwardPorts`,
`appPort`): the ports vmgen publishes on the VM's 127.0.0.1, offers as previews and forwards by
default with `vmgen forward NAME`.
"""

from __future__ import annotations

import csv
import json
import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .names import PORTS

ALLOW_SETTING = "devcontainer_allow_privileged"

# What the VM's `devcontainer-up` program (run by the agent, over the laptop's SSH at launch)
# prints for the laptop: a line per phase of `devcontainer up`, and on failure the CLI's own
# message and the last lines of its output, each line under its prefix.
UP_PHASE = "vmgen-devcontainer "
UP_ERROR = "vmgen-devcontainer-error "
UP_TAIL = "vmgen-devcontainer-log "
UP_TAIL_LINES = 12

# Docker's default capability set (moby's oci/caps/defaults.go) and SYS_PTRACE: a debugger's
# capability, confined to the container's own processes as long as --pid=host is refused.
ALLOWED_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "NET_RAW",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
        "SYS_PTRACE",
    }
)

# A bind mount of one of these, of a folder below one, or of a folder above one (`/`, `/var`)
# hands the container the VM's configuration, root's files, the engines' sockets (/run,
# /var/run: the rootful engine's, rootless engines' below /run/user), vmgen's secrets and state
# (/etc/vmgen, /var/lib/vmgen), every engine's storage (/var/lib), the kernel's interfaces or the
# system's programs.
SENSITIVE_PATHS = (
    "/etc",
    "/root",
    "/run",
    "/var/run",
    "/var/lib",
    "/var/log",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/opt",
)

_NAMESPACE_FLAGS = {
    "--pid": "the VM's processes",
    "--network": "the VM's network",
    "--net": "the VM's network",
    "--ipc": "the VM's shared memory",
    "--uts": "the VM's host name",
    "--userns": "the VM's user namespace",
    "--cgroupns": "the VM's control groups",
}
_UNCONFINED_OPTIONS = ("seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined")
_VARIABLE = re.compile(r"\$\{(localWorkspaceFolder|localWorkspaceFolderBasename|localEnv:[^}]*|env:[^}]*)\}")


@dataclass(frozen=True)
class Refusal:
    """One request of the configuration that the policy refuses: where it is, and what it gives."""

    field: str  # as the user finds it: `privileged`, `runArgs[2]`, `mounts[0]`, `capAdd`
    value: str  # the value asked for, as written (cut)
    gives: str  # what the container would get

    def line(self, config_name: str, more: int = 0) -> str:
        """The one line a user reads (`more`: how many further requests were refused)."""
        others = f" ({more} more such request{'s' if more > 1 else ''} in the configuration)" if more else ""
        return (
            f"{config_name}: {self.field} {self.value} would give the dev container {self.gives}{others}; "
            f"refused unless {ALLOW_SETTING} = true"
        )


@dataclass(frozen=True)
class Host:
    """What `${...}` in a mount's source stands for on the VM: the repository's folder and the
    environment of whoever runs the devcontainers CLI."""

    workspace_folder: str
    environment: Mapping[str, str]


def refusals(config: Mapping[str, Any], host: Host) -> list[Refusal]:
    """Every request of `config` (a devcontainer.json, a feature's metadata, the CLI's merged
    configuration) that the policy refuses, in the order of the file's fields."""
    found: list[Refusal] = []
    if _truthy(config.get("privileged")):
        found.append(Refusal("privileged", "true", "every capability and every device of the VM"))
    found += _capabilities("capAdd", _strings(config.get("capAdd")))
    for option in _strings(config.get("securityOpt")):
        if _unconfined(option):
            found.append(Refusal("securityOpt", _shown(option), "the kernel without its confinement"))
    found += _run_args(_strings(config.get("runArgs")), host)
    mounts = config.get("mounts")
    if isinstance(mounts, list):
        for index, mount in enumerate(mounts):
            found += _mount(f"mounts[{index}]", mount, host)
    workspace_mount = config.get("workspaceMount")
    if isinstance(workspace_mount, str) and workspace_mount:
        found += _mount("workspaceMount", workspace_mount, host)
    return found


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(item) for item in value if isinstance(item, str | int | float)]
    return []


def _shown(value: str, limit: int = 120) -> str:
    """A value quoted for the line, cut and without control characters."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in value)
    return '"' + (clean if len(clean) <= limit else clean[:limit] + "...") + '"'


def _capabilities(field: str, names: list[str]) -> list[Refusal]:
    found = []
    for name in names:
        normal = name.strip().upper().removeprefix("CAP_")
        if normal not in ALLOWED_CAPABILITIES:
            found.append(Refusal(field, _shown(name), f"the capability {normal or '(empty)'}"))
    return found


def _unconfined(option: str) -> bool:
    normal = option.strip().lower().replace(":", "=", 1)
    return any(normal == unconfined for unconfined in _UNCONFINED_OPTIONS)


_FALSE_WORDS = frozenset({"0", "f", "false"})
# docker run's shorthand flags: those that stand alone and those that take a value (the rest of
# the cluster, `-v/x:/y`, or the next argument), as its flag parser reads a cluster like `-itv`.
_SHORT_ALONE = frozenset("ditP")
_SHORT_VALUED = frozenset("acehlmpuvw")
# Long flags whose value may be the next argument (`--volume /x:/y`). Only flags that take a
# value belong here: one read wrongly as taking a value would hide the argument after it.
_TAKES_VALUE = frozenset(
    {
        *_NAMESPACE_FLAGS,
        "--cap-add",
        "--security-opt",
        "--device",
        "--device-cgroup-rule",
        "--volume",
        "--mount",
        "--volumes-from",
        "--env",
        "--label",
        "--name",
        "--user",
        "--workdir",
        "--publish",
        "--hostname",
        "--entrypoint",
        "--add-host",
    }
)


def _flag_values(args: list[str]) -> Iterator[tuple[int, str, str | None]]:
    """Each flag of a `docker run` argument list with its value: `--flag=value`, `--flag value`,
    `-vVALUE`, `-v VALUE`, `-itv VALUE`; (index of the flag, flag, value or None). An unknown
    long flag is taken to stand alone, so the argument after it is read as a flag too."""
    index = 0
    while index < len(args):
        arg = args[index]
        if arg.startswith("--"):
            flag, equals, value = arg.partition("=")
            if equals:
                yield index, flag, value
            elif flag in _TAKES_VALUE and index + 1 < len(args):
                yield index, flag, args[index + 1]
                index += 1
            else:
                yield index, flag, None
        elif arg.startswith("-") and len(arg) >= 2:
            for position, letter in enumerate(arg[1:], start=2):
                if letter in _SHORT_ALONE:
                    continue
                if letter in _SHORT_VALUED:
                    if position < len(arg):
                        yield index, f"-{letter}", arg[position:].removeprefix("=")
                    elif index + 1 < len(args):
                        yield index, f"-{letter}", args[index + 1]
                        index += 1
                break
        index += 1


def _run_args(args: list[str], host: Host) -> list[Refusal]:
    found: list[Refusal] = []
    for index, flag, value in _flag_values(args):
        field = f"runArgs[{index}]"
        shown = _shown(args[index] if value is None or value in args[index] else f"{args[index]} {value}")
        normal = (value or "").strip().lower()
        if flag == "--privileged" and normal not in _FALSE_WORDS:
            found.append(Refusal(field, shown, "every capability and every device of the VM"))
        elif flag in _NAMESPACE_FLAGS and normal == "host":
            found.append(Refusal(field, shown, _NAMESPACE_FLAGS[flag]))
        elif flag == "--cap-add" and value is not None:
            found += [Refusal(field, shown, r.gives) for r in _capabilities(field, value.split(","))]
        elif flag == "--security-opt" and value is not None and _unconfined(value):
            found.append(Refusal(field, shown, "the kernel without its confinement"))
        elif flag in ("--device", "--device-cgroup-rule"):
            found.append(Refusal(field, shown, "a device of the VM"))
        elif flag in ("--volume", "-v") and value is not None and ":" in value:
            # `-v SOURCE:TARGET[:OPTIONS]`; a source that is not a path names a volume of the
            # engine's own, and `-v /x` alone is an anonymous volume at /x.
            source = value.split(":", 1)[0]
            if source.startswith(("/", "${", ".")):
                found += [Refusal(field, shown, r.gives) for r in _bind_source(field, source, host)]
        elif flag == "--mount" and value is not None:
            found += [Refusal(field, shown, r.gives) for r in _mount(field, value, host)]
    return found


def _mount(field: str, mount: Any, host: Host) -> list[Refusal]:
    """A `mounts` entry: the `--mount` string (`type=bind,source=/x,target=/y`) or its object,
    which the CLI turns into `type=T,src=S,dst=D` unquoted; both read as Docker reads the string
    (CSV, keys in any case, the last `source`/`src` wins, `volume` when no type is given)."""
    if isinstance(mount, Mapping):
        source = mount.get("source")
        text = f"type={mount.get('type')}," + (f"src={source}," if source else "") + f"dst={mount.get('target')}"
    elif isinstance(mount, str):
        text = mount
    else:
        return []
    try:
        fields = next(csv.reader([text]), [])
    except csv.Error:
        return [Refusal(field, _shown(text), "a mount vmgen cannot read")]
    kind, source = "volume", ""
    for entry in fields:
        key, _, value = entry.partition("=")
        key = key.strip().lower()
        if key == "type":
            kind = value.strip().lower()
        elif key in ("source", "src"):
            source = value
    if kind != "bind":
        return []  # a named volume or a tmpfs: the engine's own storage
    return [Refusal(field, _shown(text), r.gives) for r in _bind_source(field, source, host)]


def _bind_source(field: str, source: str, host: Host) -> list[Refusal]:
    path = _substituted(source.strip(), host)
    if not path.startswith("/"):
        path = posixpath.join(host.workspace_folder, path)
    path = posixpath.normpath(path)
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    for sensitive in SENSITIVE_PATHS:
        if path == sensitive or path.startswith(sensitive + "/"):
            return [Refusal(field, _shown(source), f"the VM's {sensitive}")]
        if path == "/" or sensitive.startswith(path + "/"):
            return [Refusal(field, _shown(source), f"the VM's {path} with its {sensitive}")]
    return []


def _substituted(text: str, host: Host) -> str:
    """`${localWorkspaceFolder}`, `${localEnv:NAME[:default]}` as the CLI replaces them."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "localWorkspaceFolder":
            return host.workspace_folder
        if name == "localWorkspaceFolderBasename":
            return posixpath.basename(host.workspace_folder.rstrip("/"))
        variable, _, default = name.partition(":")[2].partition(":")
        return host.environment.get(variable, default)

    return _VARIABLE.sub(replace, text)


# --- forwardPorts and appPort ------------------------------------------------------------------

_LOCAL_HOSTS = ("localhost", "127.0.0.1")
_FORWARD_HOST_PORT = re.compile(r"([a-z0-9.-]+):(\d{1,5})")
# appPort strings as `docker run -p` reads them, TCP only: CONTAINER, HOST:CONTAINER, IP:HOST:CONTAINER.
_APP_PORT = re.compile(r"(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(?:(\d{1,5}):)?(\d{1,5})(?:/tcp)?")


@dataclass(frozen=True)
class PortRequests:
    """What a configuration asks to reach of its container, on the VM's 127.0.0.1 at the same
    port: `ports` (forwardPorts, then appPort's container ports, each once), of which vmgen
    publishes `publish` itself (the CLI publishes appPort's own), and a line for each port left out."""

    ports: tuple[int, ...] = ()
    publish: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()


class PortError(ValueError):
    """A forwardPorts or appPort value vmgen cannot read: the one line to say (without the file)."""


def requested_ports(config: Mapping[str, Any]) -> PortRequests:
    """The container ports `forwardPorts` (numbers, "localhost:N", "127.0.0.1:N"; a compose
    service's "name:N" is left out with a note) and `appPort` (a number, "[IP:]HOST:CONTAINER"
    or "CONTAINER", or a list of those) ask for. A value that is none of these, or a port outside
    1-65535, is a PortError. Ports below 1024 (which the agent's rootless Podman cannot bind on
    the VM) and vmgen's own are left out with a note."""
    wanted: list[tuple[str, int]] = []
    notes: list[str] = []
    forward = config.get("forwardPorts", [])
    if not isinstance(forward, list):
        raise PortError(f"forwardPorts must be a list of ports, not {_written(forward)}")
    for index, value in enumerate(forward):
        field = f"forwardPorts[{index}]"
        if isinstance(value, int) and not isinstance(value, bool):
            wanted.append((field, _port(field, value)))
        elif isinstance(value, str) and (match := _FORWARD_HOST_PORT.fullmatch(value.strip().lower())):
            port = _port(field, int(match[2]), value)
            if match[1] in _LOCAL_HOSTS:
                wanted.append((field, port))
            else:
                notes.append(f"{field} {_written(value)} is a port of the compose service {match[1]}: left out")
        elif isinstance(value, str) and value.strip().isdigit():
            wanted.append((field, _port(field, int(value), value)))
        else:
            raise PortError(f'{field} {_written(value)}: use a port number or "localhost:PORT"')
    # The CLI publishes appPort itself (`-p 127.0.0.1:N:N` for a number, the string as written):
    # the VM's ports it takes, and the container port each leads to.
    taken: dict[int, int] = {}
    app = config.get("appPort", [])
    entries = app if isinstance(app, list) else [app]
    for index, value in enumerate(entries):
        field = f"appPort[{index}]" if isinstance(app, list) else "appPort"
        if isinstance(value, int) and not isinstance(value, bool):
            port = _port(field, value)
            taken[port] = port
            wanted.append((field, port))
        elif isinstance(value, str) and (match := _APP_PORT.fullmatch(value.strip())):
            container = _port(field, int(match[3]), value)
            if match[2]:
                taken[_port(field, int(match[2]), value)] = container
            wanted.append((field, container))
        else:
            raise PortError(f'{field} {_written(value)}: use a port number, "HOST:CONTAINER" or a list of those')
    ports: list[int] = []
    publish: list[int] = []
    for field, port in wanted:
        if port in ports:
            continue
        if port < 1024:
            notes.append(
                f"{field} {port}: left out (below 1024, which the agent's rootless Podman cannot bind on the VM)"
            )
        elif port in PORTS.reserved:
            notes.append(f"{field} {port}: left out (one of vmgen's own ports on the VM)")
        elif taken.get(port, port) != port:
            notes.append(
                f"{field} {port}: left out (appPort publishes the VM's port {port} for the container's {taken[port]})"
            )
        else:
            ports.append(port)
            if port not in taken:
                publish.append(port)
    return PortRequests(tuple(ports), tuple(publish), tuple(notes))


def _port(field: str, port: int, written: Any = None) -> int:
    if not 1 <= port <= 65535:
        raise PortError(f"{field} {_written(port if written is None else written)}: ports are 1-65535")
    return port


def _written(value: Any) -> str:
    """A value as the file has it: a string quoted and cut, anything else as JSON (cut)."""
    return _shown(value) if isinstance(value, str) else _shown(json.dumps(value)).strip('"')
