"""Upload validation: every hostile or broken upload is refused with the exact problem, before any write."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import warnings
import zipfile

import pytest

from labs.labspec import FilesSpec
from labs.uploads import UploadRejected, UploadRules, validate_archive, validate_files, validate_upload

from .factories import DEFAULT_SPEC

# service.py required; *.py, requirements.lock, *.md; 64 KiB/256 KiB/10
RULES = UploadRules.for_files(FilesSpec(**DEFAULT_SPEC["files"]))


def make_zip(*members: tuple[str | zipfile.ZipInfo, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are the point of one test
        with zipfile.ZipFile(buffer, "w", compression=compression) as zf:
            for name, data in members:
                zf.writestr(name, data)
    return buffer.getvalue()


def special(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # unix, so external_attr carries st_mode
    info.external_attr = mode << 16
    return info


def non_utf8_name_zip() -> bytes:
    data = make_zip(("service.py", b"print(1)\n"), ("cafX.py", b"x = 1\n"))
    return data.replace(b"cafX.py", b"caf\xe9.py")  # raw latin-1 byte, UTF-8 flag unset


def hard_link_zip() -> bytes:
    data = bytearray(make_zip(("service.py", b"print(1)\n"), ("other.py", b"x = 1\n")))
    # Point the second central-directory entry at the first member's data, as a hard link would.
    second = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 4)
    data[second + 42 : second + 46] = (0).to_bytes(4, "little")
    return bytes(data)


def encrypted_zip() -> bytes:
    data = bytearray(make_zip(("service.py", b"print(1)\n")))
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(signature) + flag_at
        data[at] |= 0x1
    return bytes(data)


def lying_size_zip() -> bytes:
    payload = os.urandom(4000)
    data = bytearray(make_zip(("service.py", payload), compression=zipfile.ZIP_STORED))
    # Declare 10 bytes in both headers while 4000 follow: the reader must not trust the header.
    for signature, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.index(signature) + size_at
        data[at : at + 4] = (10).to_bytes(4, "little")
    return bytes(data)


def tar_archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        info = tarfile.TarInfo("service.py")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"x=1"))
    return buffer.getvalue()


GOOD = ("service.py", b"print('hello')\n")

HOSTILE = [
    ("zip_slip", lambda: make_zip(GOOD, ("../evil.py", b"x")), "'../evil.py' points outside the submission's root"),
    ("nested_zip_slip", lambda: make_zip(GOOD, ("a/../../evil.py", b"x")), "points outside the submission's root"),
    ("absolute_path", lambda: make_zip(GOOD, ("/etc/evil.py", b"x")), "'/etc/evil.py' is an absolute path"),
    ("windows_drive", lambda: make_zip(GOOD, ("C:\\evil.py", b"x")), "is an absolute path"),
    ("unc_path", lambda: make_zip(GOOD, ("\\\\server\\share\\evil.py", b"x")), "is an absolute path"),
    ("backslash", lambda: make_zip(GOOD, ("pkg\\evil.py", b"x")), "contains a backslash"),
    ("empty_name", lambda: make_zip(GOOD, ("/", b"")), "A file has an empty name."),
    (
        "symlink",
        lambda: make_zip(GOOD, (special("link.py", stat.S_IFLNK | 0o777), b"/etc/passwd")),
        "'link.py' is a symbolic link; only regular files are accepted.",
    ),
    (
        "char_device",
        lambda: make_zip(GOOD, (special("tty.py", stat.S_IFCHR | 0o644), b"")),
        "'tty.py' is a character device",
    ),
    (
        "block_device",
        lambda: make_zip(GOOD, (special("sda.py", stat.S_IFBLK | 0o644), b"")),
        "'sda.py' is a block device",
    ),
    ("fifo", lambda: make_zip(GOOD, (special("pipe.py", stat.S_IFIFO | 0o644), b"")), "'pipe.py' is a named pipe"),
    ("hard_link", hard_link_zip, "'other.py' and 'service.py' share the same data (a hard link"),
    ("non_utf8_name", non_utf8_name_zip, "The file name b'caf\\xe9.py' is not valid UTF-8"),
    ("encrypted", encrypted_zip, "'service.py' is encrypted"),
    ("duplicate", lambda: make_zip(GOOD, GOOD), "'service.py' appears more than once."),
    (
        "case_duplicate",
        lambda: make_zip(GOOD, ("Service.py", b"x")),
        "'service.py' and 'Service.py' differ only in upper/lower case",
    ),
    (
        "not_allowed",
        lambda: make_zip(GOOD, ("run.sh", b"rm -rf /")),
        "'run.sh' is not one of the files this lab accepts",
    ),
    ("required_missing", lambda: make_zip(("notes.md", b"hi")), "The required file 'service.py' is missing."),
    (
        "too_many_files",
        lambda: make_zip(GOOD, *[(f"m{i}.py", b"x") for i in range(10)]),
        "The archive holds 11 files; this lab accepts at most 10.",
    ),
    (
        "file_too_big",
        lambda: make_zip(GOOD, ("big.py", os.urandom(70_000))),
        "'big.py' is 70000 bytes; the per-file cap is 65536 bytes.",
    ),
    (
        "total_too_big",
        lambda: make_zip(GOOD, *[(f"p{i}.py", os.urandom(60_000)) for i in range(5)]),
        "The archive expands to 300015 bytes; this lab accepts at most 262144 bytes in all",
    ),
    ("ratio_bomb", lambda: make_zip(GOOD, ("bomb.py", b"\0" * 60_000)), "over the 100:1 bound for a single file"),
    ("lying_sizes", lying_size_zip, "'service.py' is corrupt in the archive"),
    ("too_deep", lambda: make_zip(GOOD, ("a/b/c/d/e/f/g/h/deep.py", b"x")), "is nested 9 levels deep; at most 8"),
    ("bidi_override", lambda: make_zip(GOOD, ("evil\u202egpj.py", b"x")), "contains a bidirectional text control"),
    ("zero_width", lambda: make_zip(GOOD, ("serv\u200bice.py", b"x")), "contains an invisible character"),
    ("leading_dash", lambda: make_zip(GOOD, ("-rf.py", b"x")), "'-rf.py' starts with '-'"),
    ("windows_colon", lambda: make_zip(GOOD, ("a:b.py", b"x")), "'a:b.py' contains ':', which Windows does not allow"),
    ("tar", tar_archive, "This is a tar archive; only .zip archives are accepted."),
    ("not_a_zip", lambda: b"just some text, not an archive", "This is not a readable zip archive"),
]


def problems_of(data: bytes) -> list[str]:
    with pytest.raises(UploadRejected) as caught:
        validate_archive(data, rules=RULES)
    return caught.value.problems


@pytest.mark.parametrize(("case", "build", "expected"), HOSTILE, ids=[case for case, _, _ in HOSTILE])
def test_it_rejects_each_hostile_upload_with_the_exact_problem(case, build, expected):
    problems = problems_of(build())
    assert any(expected in problem for problem in problems), problems


def test_it_lists_every_problem_at_once():
    data = make_zip(("../up.py", b"x"), ("run.sh", b"x"), (special("l.py", stat.S_IFLNK | 0o777), b"/"))
    problems = problems_of(data)
    assert len(problems) == 4, problems
    assert any("points outside" in p for p in problems)
    assert any("is not one of the files" in p for p in problems)
    assert any("symbolic link" in p for p in problems)
    assert any("required file 'service.py' is missing" in p for p in problems)


def test_it_never_decompresses_a_bomb_whose_headers_claim_gigabytes():
    bomb = make_zip(GOOD, ("bomb.py", b"\0" * 5_000_000))  # ~5 KB compressed
    assert len(bomb) < 20_000
    problems = problems_of(bomb)
    assert any("expands to 5000015 bytes" in p for p in problems), problems


def test_it_accepts_a_clean_zip_and_hashes_the_tree():
    data = make_zip(GOOD, ("pkg/util.py", b"X = 1\n"), ("requirements.lock", b"pytest==8.3.3\n"))
    tree = validate_archive(data, rules=RULES)
    assert [path for path, _, _ in tree.files] == ["pkg/util.py", "requirements.lock", "service.py"]
    assert tree.files[2][2] == hashlib.sha256(GOOD[1]).hexdigest()
    assert tree.total_bytes == len(GOOD[1]) + 6 + 14
    listing = "".join(f"{digest}  {path}\n" for path, _, digest in tree.files)
    assert tree.tree_sha256 == hashlib.sha256(listing.encode()).hexdigest()


def test_the_tree_digest_does_not_depend_on_member_order_or_compression():
    one = validate_archive(make_zip(GOOD, ("b.py", b"b")), rules=RULES)
    two = validate_archive(make_zip(("b.py", b"b"), GOOD, compression=zipfile.ZIP_STORED), rules=RULES)
    assert one.tree_sha256 == two.tree_sha256


def test_it_strips_the_folder_a_zipped_directory_puts_everything_in():
    tree = validate_archive(make_zip(("quote/service.py", b"x"), ("quote/lib/a.py", b"y")), rules=RULES)
    assert [path for path, _, _ in tree.files] == ["lib/a.py", "service.py"]


def test_it_accepts_utf8_names_even_without_the_utf8_flag():
    data = make_zip(GOOD, ("cafXX.py", b"x")).replace(b"cafXX.py", "café.py".encode())  # same length
    tree = validate_archive(data, rules=RULES)
    assert "café.py" in [path for path, _, _ in tree.files]


def test_it_accepts_several_files_with_folder_paths():
    tree = validate_files([("service.py", b"x"), ("pkg/a.py", io.BytesIO(b"yy"))], rules=RULES)
    assert [(p, len(d)) for p, d, _ in tree.files] == [("pkg/a.py", 2), ("service.py", 1)]


def test_it_rejects_path_tricks_in_multi_file_uploads():
    with pytest.raises(UploadRejected) as caught:
        validate_files([("service.py", b"x"), ("../../etc/cron.d/x.py", b"x"), ("/abs.py", b"x")], rules=RULES)
    assert caught.value.problems == [
        "'../../etc/cron.d/x.py' points outside the submission's root ('..').",
        "'/abs.py' is an absolute path; paths must be relative to the submission's root.",
    ]


def test_it_does_not_read_an_oversized_uploaded_file():
    class Big(io.BytesIO):
        size = 10**9

        def read(self, *args):
            raise AssertionError("an oversized file must not be read")

    with pytest.raises(UploadRejected) as caught:
        validate_files([("service.py", Big())], rules=RULES)
    assert "'service.py' is 1000000000 bytes; the per-file cap is 65536 bytes." in caught.value.problems


def test_an_oversized_required_file_is_reported_as_too_large_not_as_missing():
    with pytest.raises(UploadRejected) as caught:
        validate_files([("service.py", b"x" * 70_000)], rules=RULES)
    assert caught.value.problems == ["'service.py' is 70000 bytes; the per-file cap is 65536 bytes."]
    with pytest.raises(UploadRejected) as caught:
        validate_archive(make_zip(("service.py", os.urandom(70_000))), rules=RULES)
    assert caught.value.problems == ["'service.py' is 70000 bytes; the per-file cap is 65536 bytes."]


def test_a_single_zip_in_a_file_list_is_treated_as_the_archive():
    tree = validate_upload([("work.zip", make_zip(GOOD))], rules=RULES)
    assert [path for path, _, _ in tree.files] == ["service.py"]


def test_rules_default_when_the_spec_leaves_files_out():
    rules = UploadRules.for_files(FilesSpec())
    assert rules == UploadRules()
    assert (rules.required, rules.allowed, rules.max_files) == ((), ("**",), 100)
    tree = validate_archive(make_zip(("any/thing.bin", b"\x00\x01")), rules=rules)
    assert tree.files[0][0] == "any/thing.bin"


# --- names that mislead a reviewer or break elsewhere ----------------------------------------------------------


def name_problems(name: str) -> list[str]:
    """The problems of one extra file called `name` next to a good service.py, through both kinds of upload."""
    with pytest.raises(UploadRejected) as as_zip:
        validate_archive(make_zip(GOOD, (name, b"x = 1\n")), rules=RULES)
    with pytest.raises(UploadRejected) as as_files:
        validate_files([GOOD, (name, b"x = 1\n")], rules=RULES)
    assert as_zip.value.problems == as_files.value.problems
    return as_zip.value.problems


BIDI_CONTROLS = [
    ("\u202a", "LEFT-TO-RIGHT EMBEDDING"),
    ("\u202b", "RIGHT-TO-LEFT EMBEDDING"),
    ("\u202c", "POP DIRECTIONAL FORMATTING"),
    ("\u202d", "LEFT-TO-RIGHT OVERRIDE"),
    ("\u202e", "RIGHT-TO-LEFT OVERRIDE"),
    ("\u2066", "LEFT-TO-RIGHT ISOLATE"),
    ("\u2067", "RIGHT-TO-LEFT ISOLATE"),
    ("\u2068", "FIRST STRONG ISOLATE"),
    ("\u2069", "POP DIRECTIONAL ISOLATE"),
    ("\u200e", "LEFT-TO-RIGHT MARK"),
    ("\u200f", "RIGHT-TO-LEFT MARK"),
    ("\u061c", "ARABIC LETTER MARK"),
]


@pytest.mark.parametrize(("char", "unicode_name"), BIDI_CONTROLS, ids=[name for _, name in BIDI_CONTROLS])
def test_a_name_with_a_bidi_control_is_refused_naming_the_control(char, unicode_name):
    problems = name_problems(f"report{char}yp.txt.py")
    assert len(problems) == 1, problems
    assert "contains a bidirectional text control" in problems[0]
    assert f"U+{ord(char):04X} {unicode_name}" in problems[0]
    assert char not in problems[0], "the message must show the control escaped, not let it reorder the message"


INVISIBLE = [
    ("\u200b", "ZERO WIDTH SPACE"),
    ("\u200c", "ZERO WIDTH NON-JOINER"),
    ("\u200d", "ZERO WIDTH JOINER"),
    ("\u2060", "WORD JOINER"),
    ("\ufeff", "ZERO WIDTH NO-BREAK SPACE"),
    ("\u00ad", "SOFT HYPHEN"),
    ("\u3164", "HANGUL FILLER"),
    ("\u2800", "BRAILLE PATTERN BLANK"),
]


@pytest.mark.parametrize(("char", "unicode_name"), INVISIBLE, ids=[name for _, name in INVISIBLE])
def test_a_name_with_an_invisible_character_is_refused_naming_it(char, unicode_name):
    problems = name_problems(f"serv{char}ice.py")
    assert len(problems) == 1, problems
    assert "contains an invisible character" in problems[0]
    assert f"U+{ord(char):04X} {unicode_name}" in problems[0]
    assert char not in problems[0], "the message must show the character escaped, or it is invisible there too"


@pytest.mark.parametrize("char", ["\u00a0", "\u2002", "\u2009", "\u202f", "\u3000", "\u2028"])
def test_a_space_that_is_not_the_ordinary_space_is_refused_naming_it(char):
    problems = name_problems(f"my{char}notes.md")
    assert len(problems) == 1, problems
    assert "contains a space that is not the ordinary space" in problems[0]
    assert f"U+{ord(char):04X}" in problems[0]


def test_an_ordinary_space_or_dash_inside_a_name_is_accepted():
    tree = validate_files([GOOD, ("my notes.md", b"x"), ("pkg/my-module.py", b"x")], rules=RULES)
    assert [path for path, _, _ in tree.files] == ["my notes.md", "pkg/my-module.py", "service.py"]


@pytest.mark.parametrize(
    ("name", "segment"),
    [(" service.py", None), ("pkg/ util.py", "' util.py'"), (" pkg/util.py", "' pkg'")],
)
def test_a_leading_space_in_any_path_segment_is_refused(name, segment):
    problems = name_problems(name)
    assert len(problems) == 1, problems
    assert "starts with a space" in problems[0]
    assert problems[0].startswith(repr(name))
    if segment:
        assert f"the name {segment} starts with a space" in problems[0]


@pytest.mark.parametrize("name", ["notes.md ", "pkg /util.py"])
def test_a_trailing_space_in_any_path_segment_is_refused(name):
    problems = name_problems(name)
    assert len(problems) == 1, problems
    assert "ends with a space" in problems[0]


@pytest.mark.parametrize("name", ["-rf.py", "pkg/--help.py", "-pkg/util.py"])
def test_a_leading_dash_in_any_path_segment_is_refused_as_a_command_line_option(name):
    problems = name_problems(name)
    assert len(problems) == 1, problems
    assert "starts with '-', so command-line tools would take it for an option" in problems[0]


@pytest.mark.parametrize("char", list('<>:"|?*'))
def test_each_character_windows_forbids_is_refused_by_name(char):
    problems = name_problems(f"a{char}b.py")
    assert problems == [
        f"{f'a{char}b.py'!r} contains {char!r}, which Windows does not allow in file names "
        '(it refuses < > : " | ? *); rename it.'
    ]


@pytest.mark.parametrize("name", ["a:b.py", "C:evil.py"])
def test_a_colon_is_reported_as_a_colon_not_as_an_absolute_path(name):
    problems = name_problems(name)
    assert len(problems) == 1, problems
    assert "contains ':'" in problems[0]
    assert "absolute" not in problems[0]


@pytest.mark.parametrize("name", ["C:\\evil.py", "C:/evil.py", "c:/evil.py"])
def test_a_drive_letter_path_is_still_an_absolute_path(name):
    assert name_problems(name) == [f"{name!r} is an absolute path; paths must be relative to the submission's root."]


@pytest.mark.parametrize("char", ["\x07", "\x1b", "\x7f", "\x85"])
def test_a_control_character_is_refused_naming_its_code_point(char):
    problems = name_problems(f"te{char}st.py")
    assert len(problems) == 1, problems
    assert f"contains control characters (U+{ord(char):04X}" in problems[0]


def test_a_nul_in_a_dropped_file_name_is_refused_naming_it():
    # (In a zip, Python's zipfile already cuts a name at its NUL: the member is read as 'te'.)
    with pytest.raises(UploadRejected) as caught:
        validate_files([GOOD, ("te\x00st.py", b"x")], rules=RULES)
    assert caught.value.problems == ["'te\\x00st.py' contains control characters (U+0000); rename it."]


def test_every_refused_kind_of_character_in_one_name_is_reported_at_once():
    problems = name_problems("-a\u202eb\u200bc:d.py ")
    assert len(problems) == 5, problems
    assert any("bidirectional text control (U+202E" in p for p in problems)
    assert any("invisible character (U+200B" in p for p in problems)
    assert any("contains ':'" in p for p in problems)
    assert any("ends with a space" in p for p in problems)
    assert any("starts with '-'" in p for p in problems)


def test_a_path_that_leaves_the_root_is_refused_for_that_before_its_characters():
    assert name_problems("../<b>x</b>.py") == ["'../<b>x</b>.py' points outside the submission's root ('..')."]


def test_a_misleading_folder_name_refuses_every_file_inside_it():
    with pytest.raises(UploadRejected) as caught:
        validate_files([GOOD, ("lib\u200b/a.py", b"x"), ("lib\u200b/b.py", b"x")], rules=RULES)
    assert len(caught.value.problems) == 2
    assert all("invisible character (U+200B ZERO WIDTH SPACE)" in p for p in caught.value.problems)


# --- a file that is only too large is reported as too large, nothing else ----------------------------------------


def test_an_oversized_required_file_in_a_zipped_folder_is_reported_as_too_large_not_missing():
    data = make_zip(("quote/service.py", os.urandom(70_000)), ("quote/lib/a.py", b"x"))
    assert problems_of(data) == ["'quote/service.py' is 70000 bytes; the per-file cap is 65536 bytes."]


def test_an_oversized_required_file_in_a_dropped_zip_is_reported_as_too_large_not_missing():
    with pytest.raises(UploadRejected) as caught:
        validate_upload([("work.zip", make_zip(("service.py", os.urandom(70_000))))], rules=RULES)
    assert caught.value.problems == ["'service.py' is 70000 bytes; the per-file cap is 65536 bytes."]


def test_an_oversized_required_file_in_dropped_folder_files_is_reported_as_too_large_not_missing():
    with pytest.raises(UploadRejected) as caught:
        validate_files([("quote/service.py", b"x" * 70_000), ("quote/lib/a.py", b"x")], rules=RULES)
    assert caught.value.problems == ["'quote/service.py' is 70000 bytes; the per-file cap is 65536 bytes."]


def test_a_required_file_past_the_file_count_limit_is_reported_as_too_many_files_not_missing():
    files = [(f"m{i}.py", b"x") for i in range(30)] + [GOOD]
    with pytest.raises(UploadRejected) as caught:
        validate_files(files, rules=RULES)
    assert caught.value.problems == ["The upload has 31 files; this lab accepts at most 10."]


@pytest.mark.parametrize(("name", "shown"), [("caf\udce9.py", "0xE9"), ("a\ud800.py", "U+D800")])
def test_a_name_holding_bytes_that_are_not_utf8_is_refused_not_crashed_on(name, shown):
    with pytest.raises(UploadRejected) as caught:
        validate_files([GOOD, (name, b"x")], rules=RULES)
    assert len(caught.value.problems) == 1
    assert f"contains bytes that are not valid UTF-8 ({shown})" in caught.value.problems[0]
