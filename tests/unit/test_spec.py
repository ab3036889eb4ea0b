from pathlib import Path

import pytest

from vmgen.errors import InvalidSpec, NoSSHKey
from vmgen.laptop.spec import (
    GitSource,
    LocalSource,
    WebSpec,
    derive_name,
    discover_public_keys,
    parse_source,
    resolve_agent,
    validate_name,
    validate_version,
    validate_web,
)


@pytest.mark.parametrize(
    "url, name",
    [
        ("https://github.com/me/app", "app"),
        ("https://github.com/me/My_App.git", "my-app"),
        ("git@github.com:me/app.git", "app"),
        ("ssh://git@host.example/team/Big.Project", "big-project"),
        ("https://github.com/me/2fast", "fast"),
        ("https://github.com/me/" + "x" * 60, "x" * 40),
        ("https://github.com/me/caf\u00e9", "cafe"),
    ],
)
def test_name_is_derived_from_the_repository(url: str, name: str) -> None:
    assert derive_name(parse_source(url)) == name


def test_branch_after_hash() -> None:
    assert parse_source("https://github.com/me/app#feature/x") == GitSource("https://github.com/me/app", "feature/x")


def test_local_directory(tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    source = parse_source("./proj", cwd=tmp_path)
    assert source == LocalSource((tmp_path / "proj").resolve())
    assert derive_name(source) == "proj"


@pytest.mark.parametrize(
    "text, message",
    [
        ("https://github.com/me/a b", "whitespace"),
        ("https://github.com/me/app\n", "whitespace or control"),
        ("ftp://example.com/app", "use https://"),
        ("https://github.com/", "no repository path"),
        ("https://git hub.com/x", "whitespace"),
        ("https://github.com/me/app#bad..branch", "invalid branch"),
        ("https://github.com/me/app#-x", "invalid branch"),
        ("https://github.com/me/app#a b", "invalid branch"),
        ("./does-not-exist", "not a directory"),
    ],
)
def test_bad_sources_are_rejected(text: str, message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        parse_source(text)


@pytest.mark.parametrize("name", ["App", "-app", "app-", "a" * 41, "a_b", "a;b", "$(x)", "", "1app", "\u00e9t\u00e9"])
def test_bad_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidSpec, match="invalid workspace name"):
        validate_name(name)


def test_unknown_agent_lists_the_known_ones() -> None:
    with pytest.raises(InvalidSpec, match="aider, claude, codex, gemini, opencode"):
        resolve_agent("cursor")


@pytest.mark.parametrize("version", ["latest", "2.1.332", "1.0.0-beta.1"])
def test_versions(version: str) -> None:
    assert validate_version(version) == version


@pytest.mark.parametrize("version", ["1.0; rm -rf /", "$(id)", "", "a b"])
def test_bad_versions(version: str) -> None:
    with pytest.raises(InvalidSpec):
        validate_version(version)


def test_keys_come_from_the_users_ssh_dir(home: Path) -> None:
    keys = discover_public_keys((), home)
    assert len(keys) == 1 and keys[0].startswith("ssh-ed25519 ")


def test_no_key_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NoSSHKey, match="ssh-keygen"):
        discover_public_keys((), tmp_path)


def test_configured_key_text_is_validated(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec, match="not an SSH public key"):
        discover_public_keys(("not a key",), tmp_path)


@pytest.mark.parametrize(
    ("web", "error"),
    [
        (WebSpec(domain="dev.example.com", preview_domain="previews.example.com"), "another registrable domain"),
        (WebSpec(domain="dev.example.com", preview_domain="example.com"), "another registrable domain"),
        (WebSpec(preview_domain="previews.example.net"), "needs a domain"),
        (WebSpec(domain="dev.example.com", acme_ca="http://acme.test/dir"), "https:// directory URL"),
        (WebSpec(domain="dev.example.com", acme_ca_root="not a certificate"), "PEM certificate"),
    ],
)
def test_web_settings_that_would_not_do_what_they_say_are_refused(web, error):
    with pytest.raises(InvalidSpec, match=error):
        validate_web(web)


def test_a_preview_domain_on_another_registrable_domain():
    web = WebSpec(domain="dev.example.com", preview_domain="previews.example.net")
    assert validate_web(web) == web
