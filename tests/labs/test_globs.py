"""labs.globs: the one matcher for files.allowed, files.required and the files.required check's args.paths."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from labs.checks.base import GradingContext
from labs.checks.generic import FilesRequired
from labs.globs import glob_match, glob_problem, globs_match_any, is_glob, required_match
from labs.labspec import FilesSpec
from labs.uploads import UploadRejected, UploadRules, validate_files


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("[ab].py", "a.py", True),
        ("[ab].py", "c.py", False),
        ("[a-c]x.txt", "bx.txt", True),
        ("[a-c]x.txt", "dx.txt", False),
        ("[!ab].py", "a.py", False),
        ("[!ab].py", "c.py", True),
        ("report-[0-9][0-9].md", "report-07.md", True),
        ("report-[0-9][0-9].md", "report-7a.md", False),
    ],
)
def test_it_matches_bracket_classes_including_negated_ones(pattern, path, expected):
    assert glob_match(pattern, path) is expected


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("**/test_*.py", "test_a.py", True),
        ("**/test_*.py", "tests/unit/test_a.py", True),
        ("**/test_*.py", "tests/unit/a_test.py", False),
        ("src/**/*.py", "src/a.py", True),
        ("src/**/*.py", "src/a/b/c.py", True),
        ("src/**/*.py", "lib/src/a.py", False),
        ("src/**/*.py", "src/a/b/c.txt", False),
        ("docs/**", "docs/index.md", True),
        ("docs/**", "docs/a/b/c.md", True),
        ("docs/**", "docs", False),
        ("docs/**", "other/docs/a.md", False),
        ("**", "a.py", True),
        ("**", "a/b/c.bin", True),
    ],
)
def test_it_lets_double_star_cross_folders_in_front_middle_and_end(pattern, path, expected):
    assert glob_match(pattern, path) is expected


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("data/", "data/a.csv", True),
        ("data/", "data/x/y.csv", True),
        ("data/", "lab/data/a.csv", True),
        ("data/", "data", False),
        ("data/", "database.csv", False),
        ("src/data/", "src/data/a.csv", True),
        ("src/data/", "x/src/data/a.csv", False),
    ],
)
def test_it_treats_a_trailing_slash_as_a_folder_and_matches_every_file_beneath(pattern, path, expected):
    assert glob_match(pattern, path) is expected


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("*.py", "mod.py", True),
        ("*.py", "pkg/mod.py", True),
        ("*.py", "a/b/c/mod.py", True),
        ("requirements.lock", "sub/requirements.lock", True),
        ("src/*.py", "src/a.py", True),
        ("src/*.py", "x/src/a.py", False),
        ("src/a.py", "src/a.py", True),
        ("src/a.py", "x/src/a.py", False),
    ],
)
def test_it_matches_a_slashless_pattern_anywhere_and_anchors_one_with_a_slash(pattern, path, expected):
    assert glob_match(pattern, path) is expected


@pytest.mark.parametrize(
    ("pattern", "path"),
    [
        ("src/*.py", "src/sub/a.py"),
        ("src/*", "src/sub/a.py"),
        ("*.py", "x.py/readme.txt"),
        ("a?c", "a/c"),
        ("a*", "ab/c"),
    ],
)
def test_it_never_lets_star_or_question_mark_cross_a_slash(pattern, path):
    assert glob_match(pattern, path) is False


def test_it_is_case_sensitive_and_reads_a_leading_hash_as_a_character():
    assert glob_match("*.py", "A.PY") is False
    assert glob_match("#notes.md", "#notes.md") is True


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("", "it is empty"),
        ("   ", "it is empty"),
        (" *.py", "it starts or ends with a space"),
        ("/src/*.py", "it is absolute"),
        ("/", "it is absolute"),
        ("C:/work/*.py", "it is absolute"),
        ("c:x.py", "it is absolute"),
        ("src\\*.py", "it contains a backslash"),
        ("../secret.py", "it contains '..'"),
        ("src/../../x", "it contains '..'"),
        ("src//a.py", "empty or '.' folder name"),
        ("./a.py", "empty or '.' folder name"),
        ("!*.pyc", "excluding files is not supported; list only the files that are allowed"),
        ("[ab.py", "unbalanced '[' or ']'"),
        ("ab].py", "unbalanced '[' or ']'"),
        ("[].py", "empty '[]' class"),
        ("[!].py", "empty '[]' class"),
        ("src[/]a.py", "unbalanced '[' or ']'"),
        ("[z-a].py", "it is not a valid glob"),
    ],
)
def test_it_says_why_a_pattern_is_unusable(pattern, expected):
    assert expected in glob_problem(pattern)
    assert glob_match(pattern, "a.py") is False
    assert glob_match(pattern, "z.py") is False


@pytest.mark.parametrize("pattern", ["*.py", "src/**/*.py", "**/test_*.py", "docs/**", "data/", "[!ab].py", "**/"])
def test_it_has_no_problem_with_ordinary_patterns(pattern):
    assert glob_problem(pattern) == ""


def test_it_matches_any_of_several_patterns():
    assert globs_match_any(["*.md", "src/*.py"], "src/a.py") is True
    assert globs_match_any(("*.md", "src/*.py"), "lib/a.py") is False
    assert globs_match_any([], "a.py") is False


def test_it_requires_an_exact_path_exactly_and_a_glob_by_matching():
    assert is_glob("*.lock") and is_glob("data/") and is_glob("[ab].py")
    assert not is_glob("service.py") and not is_glob("src/service.py")
    assert required_match("service.py", "service.py") is True
    assert required_match("service.py", "pkg/service.py") is False
    assert required_match("*.lock", "sub/requirements.lock") is True


# The three former matchers (labspec/uploads, uploads' required files, the files.required check) now agree.
AGREEMENT = [
    ("*.py", "mod.py", True),
    ("*.py", "pkg/mod.py", True),
    ("*.py", "mod.pyc", False),
    ("*.py", "x.py/readme.txt", False),
    ("src/*.py", "src/a.py", True),
    ("src/*.py", "src/sub/a.py", False),
    ("src/*.py", "x/src/a.py", False),
    ("src/**/*.py", "src/a.py", True),
    ("src/**/*.py", "src/a/b/c.py", True),
    ("**/test_*.py", "tests/unit/test_a.py", True),
    ("**/test_*.py", "test_a.py", True),
    ("docs/**", "docs/a/b.md", True),
    ("docs/**", "doc/a.md", False),
    ("data/", "data/x/y.csv", True),
    ("data/", "database.csv", False),
    ("[ab].py", "a.py", True),
    ("[!ab].py", "a.py", False),
    ("[!ab].py", "pkg/c.py", True),
    ("[a-c]?.txt", "b1.txt", True),
    ("?.py", "ab.py", False),
    ("src/a.py", "src/a.py", True),
    ("src/a.py", "x/src/a.py", False),
]


def upload_accepts(pattern: str, path: str) -> bool:
    try:
        validate_files([(path, b"x")], rules=UploadRules.for_files(FilesSpec(allowed=[pattern])))
    except UploadRejected as exc:
        assert exc.problems == [f"{path!r} is not one of the files this lab accepts ({pattern})."]
        return False
    return True


def check_passes(pattern: str, paths: list[str], root: Path) -> bool:
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("x")
    outcome = FilesRequired(check_id="x", args={"paths": [pattern]}, points=1).run(
        SimpleNamespace(submission_dir=root, evidence_text=GradingContext.evidence_text)
    )
    assert outcome.status in ("pass", "fail"), outcome
    return outcome.status == "pass"


@pytest.mark.parametrize(("pattern", "path", "expected"), AGREEMENT)
def test_it_gives_uploads_the_check_and_glob_match_the_same_answer(pattern, path, expected, tmp_path):
    assert FilesRequired.validate_args({"paths": [pattern]}) == []
    assert glob_match(pattern, path) is expected
    assert upload_accepts(pattern, path) is expected
    assert check_passes(pattern, [path], tmp_path) is expected


def test_it_holds_an_exact_required_path_to_that_path_in_uploads_and_in_the_check(tmp_path):
    rules = UploadRules.for_files(FilesSpec(required=["service.py"], allowed=["**"]))
    files = [("pkg/service.py", b"x"), ("README.md", b"x")]
    with pytest.raises(UploadRejected) as caught:
        validate_files(files, rules=rules)
    assert caught.value.problems == ["The required file 'service.py' is missing."]
    assert check_passes("service.py", [path for path, _ in files], tmp_path) is False
    assert check_passes("service.py", ["service.py"], tmp_path) is True


def test_the_check_refuses_a_bad_glob_in_its_args():
    assert FilesRequired.validate_args({"paths": ["greet.py", "!*.pyc"]}) == [
        "args.paths has a bad glob '!*.pyc': it starts with '!', but excluding files is not supported; "
        "list only the files that are allowed"
    ]
