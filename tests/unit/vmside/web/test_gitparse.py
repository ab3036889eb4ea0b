"""The changes view's parsers, without git: what git prints (status, diff, log), cut anywhere and
shaped by the agent, becomes a clamped document whose every cut is counted."""

from __future__ import annotations

import json

import pytest

from vmgen.contract import codec
from vmgen.contract.changes import DOCUMENT_MAX, FILE_LINES, LINE_LIMIT, MAX_FILES, Changes
from vmgen.errors import DocumentError
from vmgen.vmside.web.gitparse import combine, fit, parse_diff, parse_log, parse_status

OID = "84f52ebf1b2d1d2abf748696530cb0478ff11b86"
H = "0" * 40


def status(*records: bytes) -> bytes:
    return b"\0".join(records) + b"\0"


STATUS = status(
    b"# branch.oid " + OID.encode(),
    b"# branch.head main",
    b"1 .M N... 100644 100644 100644 " + H.encode() + b" " + H.encode() + b" f.txt",
    b"1 A. N... 000000 100644 100644 " + H.encode() + b" " + H.encode() + b" new file.txt",
    b"1 D. N... 100644 000000 000000 " + H.encode() + b" " + H.encode() + b" gone.txt",
    b"2 R. N... 100644 100644 100644 " + H.encode() + b" " + H.encode() + b" R100 renamed.txt",
    b"ren.txt",
    b"u UU N... 100644 100644 100644 100644 " + b" ".join([H.encode()] * 3) + b" both.txt",
    b"? notes.md",
    b"garbage that is no record",
)


def test_status_names_every_file_with_its_state_against_head():
    parsed = parse_status(STATUS)
    assert (parsed.branch, parsed.head) == ("main", OID[:7])
    assert [(f.path, f.state, f.old_path) for f in parsed.files] == [
        ("f.txt", "modified", ""),
        ("new file.txt", "added", ""),
        ("gone.txt", "deleted", ""),
        ("renamed.txt", "renamed", "ren.txt"),
        ("both.txt", "unmerged", ""),
        ("notes.md", "untracked", ""),
    ]


def test_status_before_the_first_commit_and_detached():
    parsed = parse_status(status(b"# branch.oid (initial)", b"# branch.head (detached)"))
    assert (parsed.branch, parsed.head, parsed.files) == ("", "", [])


def test_status_past_the_file_limit_counts_what_it_left_out():
    parsed = parse_status(status(*(b"? f%d" % i for i in range(MAX_FILES + 7))))
    assert len(parsed.files) == MAX_FILES and parsed.files_left_out == 7


def diff(raw: list[bytes], numstat: list[bytes], patch: str) -> bytes:
    return b"\0".join(raw + numstat) + b"\0\0" + patch.encode()


PATCH = """diff --git a/f.txt b/f.txt
index de98044..d68dd40 100644
--- a/f.txt
+++ b/f.txt
@@ -1,3 +1,4 @@ def f():
 a
-b
+B\tand a tab
+--- not a header, an added line
\\ No newline at end of file
diff --git a/logo.png b/logo.png
index 1111111..2222222 100644
Binary files a/logo.png and b/logo.png differ
diff --git a/ren.txt b/renamed.txt
similarity index 90%
rename from ren.txt
rename to renamed.txt
--- a/ren.txt
+++ b/renamed.txt
@@ -1 +1 @@
-old
+new
"""

RAW = [
    b":100644 100644 de98044 0000000 M",
    b"f.txt",
    b":100644 100644 1111111 2222222 M",
    b"logo.png",
    b":100644 100644 3367afd 3367afd R090",
    b"ren.txt",
    b"renamed.txt",
]
NUMSTAT = [b"2\t1\tf.txt", b"-\t-\tlogo.png", b"1\t1\t", b"ren.txt", b"renamed.txt"]


def test_diff_lines_per_file_in_gits_order_with_counts_and_binaries_named_only():
    f, logo, renamed = parse_diff(diff(RAW, NUMSTAT, PATCH))
    assert (f.path, f.added, f.deleted, f.binary) == ("f.txt", 2, 1, False)
    assert [(line.kind, line.text) for line in f.lines] == [
        ("@", "@@ -1,3 +1,4 @@ def f():"),
        (" ", "a"),
        ("-", "b"),
        ("+", "B    and a tab"),
        ("+", "--- not a header, an added line"),
        ("\\", "\\ No newline at end of file"),
    ]
    assert (logo.path, logo.binary, logo.lines) == ("logo.png", True, [])
    assert renamed.path == "renamed.txt" and [line.text for line in renamed.lines][1:] == ["old", "new"]


def test_control_and_bidi_characters_never_reach_the_page_and_long_lines_are_cut():
    patch = "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -0,0 +1,2 @@\n+ok\x1b[31m\u202egnp.exe\x00\n+" + "y" * 5000 + "\n"
    (x,) = parse_diff(diff([b":000000 100644 0 1 A", b"x"], [b"2\t0\tx"], patch))
    assert x.lines[1].text == "ok[31mgnp.exe" and not x.lines[1].cut
    assert len(x.lines[2].text) == LINE_LIMIT and x.lines[2].cut


def test_a_long_diff_is_cut_per_file_and_the_rest_counted():
    body = "".join(f"+line {i}\n" for i in range(FILE_LINES + 50))
    patch = f"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -0,0 +1,{FILE_LINES + 50} @@\n{body}"
    status_ = parse_status(status(b"# branch.oid " + OID.encode(), b"1 .M N... 1 1 1 a b x"))
    diffs = parse_diff(diff([b":1 1 a b M", b"x"], [f"{FILE_LINES + 50}\t0\tx".encode()], patch))
    (x,) = combine(status_, diffs, []).files
    assert len(x.lines) == FILE_LINES and x.lines_left_out == 51  # the hunk's head took a line


def test_the_budget_cuts_later_files_and_counts_their_lines():
    patch = "".join(f"diff --git a/f{i} b/f{i}\n@@ -1 +1 @@\n-{'a' * 300}\n+{'b' * 300}\n" for i in range(100))
    raw = [part for i in range(100) for part in (b":1 1 a b M", b"f%d" % i)]
    numstat = [b"1\t1\tf%d" % i for i in range(100)]
    diffs = parse_diff(diff(raw, numstat, patch), budget=20_000)
    shown = [d for d in diffs if d.lines]
    assert 0 < len(shown) < 100 and all(d.cut for d in diffs[len(shown) :])
    status_ = parse_status(status(*(b"1 .M N... 1 1 1 a b f%d" % i for i in range(100))))
    files = combine(status_, diffs, []).files
    assert files[-1].lines == () and files[-1].lines_left_out == 2


@pytest.mark.parametrize("cut_at", [0, 10, 40, 120, 200, 333, len(PATCH) - 3])
def test_output_cut_anywhere_still_parses(cut_at):
    data = diff(RAW, NUMSTAT, PATCH)
    head = len(data) - len(PATCH.encode())
    parsed = parse_diff(data[: head + cut_at] if cut_at else data[: head - 5])
    assert len(parsed) <= 3


def test_a_diff_that_is_no_diff_gives_nothing():
    assert parse_diff(b"") == []
    assert parse_diff(b"\xff\xfe random bytes \0\0 diff --git nonsense\n+x") == []


LOG = (
    b"\x1e4f3079d\x1f1796647205\x1fsecond: rename and more\0\nnew.txt\0ren.txt\0renamed.txt\0"
    b"\x1enot-a-hash\x1f1\x1fskipped\0\nx\0"
    b"\x1e84f52eb\x1f1796647195\x1ffirst \x1b[1mcommit\0\n" + b"\0".join(b"f%d" % i for i in range(25)) + b"\0"
    b"\x1eabcdef0\x1f1796647000\x1fan empty commit\0"
)


def test_log_gives_hash_time_subject_and_files():
    second, first, empty = parse_log(LOG)
    assert (second.hash, second.at, second.subject) == ("4f3079d", 1796647205.0, "second: rename and more")
    assert second.files == ("new.txt", "ren.txt", "renamed.txt")
    assert first.subject == "first [1mcommit" and len(first.files) == 20 and first.files_left_out == 5
    assert empty.files == ()


def test_a_document_of_huge_names_still_fits_what_the_page_reads():
    name = ("\u0666" * 300).encode()
    status_ = parse_status(
        status(*(b"2 R. N... 1 1 1 a b R100 " + name + b"%d\0" % i + name for i in range(MAX_FILES)))
    )
    log = b"".join(b"\x1e%07x\x1f1\x1f" % (i + 0xABCDEF0) + name + b"\0\n" + b"\0".join([name] * 20) for i in range(10))
    changes = combine(status_, [], parse_log(log))
    assert len(json.dumps(codec.to_value(changes))) <= DOCUMENT_MAX
    assert changes.files_left_out + len(changes.files) == MAX_FILES


def test_fit_drops_lines_before_files():
    status_ = parse_status(status(b"1 .M N... 1 1 1 a b x"))
    patch = "diff --git a/x b/x\n@@ -1 +1 @@\n" + "".join(f"+{'z' * 300}\n" for _ in range(300))
    diffs = parse_diff(diff([b":1 1 a b M", b"x"], [b"300\t0\tx"], patch))
    changes = fit(combine(status_, diffs, []), limit=10_000)
    assert len(changes.files) == 1 and changes.files[0].lines == () and changes.files[0].lines_left_out == 300


def test_the_page_refuses_a_document_of_unknown_kinds():
    good = codec.to_value(combine(parse_status(STATUS), parse_diff(diff(RAW, NUMSTAT, PATCH)), []))
    assert Changes.from_result(good).files[0].lines[0].kind == "@"
    bad = json.loads(json.dumps(good))
    bad["files"][0]["lines"][0]["kind"] = "<script>"
    with pytest.raises(DocumentError):
        Changes.from_result(bad)
    with pytest.raises(DocumentError):
        Changes.from_result({**good, "cut": "sometimes"})
