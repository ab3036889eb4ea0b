from vmgen.laptop.providers.docker_engine import systemd_run_options


def test_systemd_runs_without_privileged_on_cgroup_v1_and_v2() -> None:
    for version in ("1", "2"):
        options = systemd_run_options(version)
        assert "privileged" not in options
        assert options["cgroupns"] == "host"  # Docker's default on v2 is "private" (read-only)
        assert set(options["cap_add"]) == {"SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE"}  # root reads /proc/<pid>/fd
        assert {"/run", "/run/lock"} <= set(options["tmpfs"])
        assert options["stop_signal"] == "SIGRTMIN+3"  # systemd's request for a clean shutdown


def test_cgroup_v2_hosts_get_apparmor_unconfined_for_systemd_mounts() -> None:
    assert "security_opt" not in systemd_run_options("1")
    assert systemd_run_options("2")["security_opt"] == ["apparmor=unconfined"]


def test_a_workspace_mounts_only_its_own_folder_of_a_local_store(tmp_path) -> None:
    from vmgen.laptop.agents import AGENTS
    from vmgen.laptop.providers.docker_engine import backup_mounts
    from vmgen.laptop.spec import LocalSource, RestoreSource, VmgenInstall, WorkspaceSpec

    def spec_of(name: str, source: LocalSource | RestoreSource) -> WorkspaceSpec:
        return WorkspaceSpec(
            name=name,
            source=source,
            agent=AGENTS["claude"],
            vmgen=VmgenInstall(version="0.1"),
            ssh_keys=("ssh-ed25519 AAAA test",),
            local_backup_dir=store,
        )

    store = tmp_path / "backups"
    (store / "ws/other").mkdir(parents=True)
    assert backup_mounts(spec_of("app", LocalSource(tmp_path))) == {
        str(store / "ws/app"): {"bind": "/var/lib/vmgen/backups/ws/app", "mode": "rw"}
    }
    assert (store / "ws/app").is_dir()  # made by this user, not by docker as root
    assert backup_mounts(spec_of("app2", RestoreSource("app"))) == {
        str(store / "ws/app2"): {"bind": "/var/lib/vmgen/backups/ws/app2", "mode": "rw"},
        str(store / "ws/app"): {"bind": "/var/lib/vmgen/backups/ws/app", "mode": "ro"},  # what it restores
    }
