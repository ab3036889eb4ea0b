from vmgen.providers.docker import systemd_run_options


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
