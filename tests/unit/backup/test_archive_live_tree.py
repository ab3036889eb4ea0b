"""The archive of a tree that changes while it is read: a file deleted after its folder was listed
is simply not in the backup (nothing was left out), while what cannot be held or read is said."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from vmgen.backup import archive


def test_a_file_deleted_while_the_backup_runs_is_not_reported_as_skipped(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "kept.txt").write_text("kept\n")
    (tmp_path / "going.txt").write_text("going\n")
    os.mkfifo(tmp_path / "a-fifo")
    real_open = os.open

    def deleted_first(path, flags, *args):  # the agent deletes it between listing and reading
        if str(path).endswith("going.txt"):
            os.unlink(path)
        return real_open(path, flags, *args)

    monkeypatch.setattr("vmgen.backup.archive.os.open", deleted_first)
    out = io.BytesIO()
    summary, _size = archive.write_tree(tmp_path, out, excludes=())
    assert summary.skipped == ("a-fifo: special file",)  # said, with why; the deleted one is not
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        names = tar.getnames()
    assert "kept.txt" in names and "going.txt" not in names


def test_a_file_swapped_for_a_link_while_the_backup_runs_is_archived_as_what_it_became(
    tmp_path: Path, monkeypatch
) -> None:
    (tmp_path / "swapped").write_text("a file when listed\n")
    os.symlink("/etc/hostname", tmp_path / "was-a-link")
    real_open, real_readlink = os.open, os.readlink

    def swap_first(path, flags, *args):  # the agent renames a link over it before it is read
        if str(path).endswith("swapped"):
            os.symlink("/etc/shadow", f"{path}.new")
            os.rename(f"{path}.new", path)
        return real_open(path, flags, *args)

    def unlinked_first(path, *args, **kwargs):  # and a file over the link
        if str(path).endswith("was-a-link"):
            (tmp_path / "was-a-link.new").write_text("a file now\n")
            os.rename(tmp_path / "was-a-link.new", path)
        return real_readlink(path, *args, **kwargs)

    monkeypatch.setattr("vmgen.backup.archive.os.open", swap_first)
    monkeypatch.setattr("vmgen.backup.archive.os.readlink", unlinked_first)
    out = io.BytesIO()
    summary, _size = archive.write_tree(tmp_path, out, excludes=())
    assert summary.skipped == ()
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        members = {m.name: m for m in tar}
    assert members["swapped"].issym() and members["swapped"].linkname == "/etc/shadow"  # never followed
    assert members["was-a-link"].isfile() and members["was-a-link"].size == len("a file now\n")
