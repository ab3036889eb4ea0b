"""Who made a workspace or an image: users who share a uid and a host (everyone root on a shared
machine) are told apart by the owner id in their own vmgen state folder."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from vmgen.contract.names import OWNER_ID_LABEL, OWNER_LABEL
from vmgen.laptop.owner import describe_owner, local_owner, owned, owner_id, owner_labels
from vmgen.laptop.stamps import label_value


def as_user(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)


def test_two_users_of_one_uid_and_host_are_told_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    as_user(monkeypatch, tmp_path / "alice")
    alices = owner_labels()
    assert owner_id() == alices[OWNER_ID_LABEL]  # kept: the same id on every run
    path = tmp_path / "alice/.local/state/vmgen/owner-id"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    as_user(monkeypatch, tmp_path / "bob")
    bobs = owner_labels()
    assert alices[OWNER_LABEL] == bobs[OWNER_LABEL] == local_owner()  # the same user@host
    assert alices[OWNER_ID_LABEL] != bobs[OWNER_ID_LABEL]
    assert _owned(bobs) is True and _owned(alices) is False
    assert describe_owner(alices[OWNER_LABEL], alices[OWNER_ID_LABEL]) != describe_owner(
        bobs[OWNER_LABEL], bobs[OWNER_ID_LABEL]
    )


def test_things_made_before_owner_ids_are_nobodys_for_sure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    as_user(monkeypatch, tmp_path / "me")
    assert owned(local_owner(), "") is None  # this user@host, or another user of it: cannot tell
    assert owned(label_value(local_owner()), "", label_value) is None  # a cloud label holds it sanitised
    assert owned("", "") is None  # before vmgen recorded owners at all
    assert owned("someone@elsewhere", "") is False


def test_a_broken_owner_id_file_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    as_user(monkeypatch, tmp_path / "me")
    path = tmp_path / "me/.local/state/vmgen/owner-id"
    path.parent.mkdir(parents=True)
    path.write_text("half")
    made = owner_id()
    assert len(made) == 16 and path.read_text().strip() == made and owner_id() == made


def _owned(labels: dict[str, str]) -> bool | None:
    return owned(owner=labels[OWNER_LABEL], made_by=labels[OWNER_ID_LABEL])
