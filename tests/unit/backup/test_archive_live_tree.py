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

    monkeypatch.setattr(archive.os, "open", deleted_first)
    out = io.BytesIO()
    summary, _size = archive.write_tree(tmp_path, out, excludes=())
    assert summary.skipped == ("a-fifo: special file",)  # said, with why; the deleted one is not
    names = tarfile.open(fileobj=io.BytesIO(out.getvalue())).getnames()
    assert "kept.txt" in names and "going.txt" not in names
