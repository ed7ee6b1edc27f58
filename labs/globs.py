"""The one glob matcher for a lab's files: `files.allowed`, `files.required` and the `files.required` check's
`args.paths`. Built on pathspec's gitignore-style ("gitwildmatch") patterns, with one change: a pattern names
files, never a folder's contents unless it ends in `/`.

The rules (the authoring guide repeats them):

- Paths are relative to the submission root and use `/` between folders. Matching is case-sensitive.
- `*` matches any run of characters and `?` one character, never a `/`. `**` as a whole path segment crosses
  folders: `src/**/*.py` (any depth below src, src itself included), `**/test_*.py` (anywhere), `docs/**`
  (everything below docs). `[abc]`, `[a-z]` and `[!abc]` match one character of (or not of) a class.
- A pattern with no `/` (other than a trailing one) matches the file name in any folder, like .gitignore:
  `*.py` matches `mod.py` and `pkg/mod.py`. A pattern containing a `/` is anchored at the submission root:
  `src/*.py` matches `src/a.py`, not `x/src/a.py` nor `src/sub/a.py`. A leading `/` is refused, so a pattern is
  anchored by containing a slash.
- A pattern ending in `/` names a folder and matches every file beneath it: `data/` matches `data/a.csv` and
  `data/x/y.csv` (and, having no other `/`, `lab/data/a.csv` too).
- Unusable patterns (see `glob_problem`) match nothing; lab validation reports them first.
- Required entries: an exact path (no `*`, `?`, `[` and no trailing `/`) must be present exactly as written;
  a required glob is satisfied when at least one submitted file matches it under the rules above.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from pathspec.patterns.gitwildmatch import _DIR_MARK, GitWildMatchPattern, GitWildMatchPatternError

_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")
_GLOB_CHARS = ("*", "?", "[")


def glob_problem(pattern: str) -> str:
    """Why a files glob is unusable, as a sentence fragment ("it is empty"), or "" when it is fine."""
    if not pattern.strip():
        return "it is empty"
    if pattern != pattern.strip():
        return "it starts or ends with a space"
    if pattern.startswith("/") or _WINDOWS_DRIVE.match(pattern):
        return "it is absolute; globs are relative to the submission root"
    if "\\" in pattern:
        return "it contains a backslash; use / between folders"
    segments = pattern.removesuffix("/").split("/")
    if ".." in segments:
        return "it contains '..', which would leave the submission root"
    if any(segment in ("", ".") for segment in segments):
        return "it has an empty or '.' folder name ('//' or './'); write a plain relative path"
    if pattern.startswith("!"):
        return "it starts with '!', but excluding files is not supported; list only the files that are allowed"
    if not _brackets_balanced(pattern):
        return "it has an unbalanced '[' or ']' (or an empty '[]' class)"
    try:
        _compile(pattern)
    except (GitWildMatchPatternError, re.error) as exc:
        return f"it is not a valid glob ({exc})"
    return ""


def glob_match(pattern: str, path: str) -> bool:
    """Whether the submission path `path` (a file) matches the glob `pattern`."""
    regex = _matcher(pattern)
    return regex is not None and regex.fullmatch(path) is not None


def globs_match_any(patterns: Iterable[str], path: str) -> bool:
    """Whether `path` matches at least one of `patterns`."""
    return any(glob_match(pattern, path) for pattern in patterns)


def is_glob(pattern: str) -> bool:
    """Whether an entry is a glob rather than an exact path: it has `*`, `?` or `[`, or ends in `/`."""
    return pattern.endswith("/") or any(ch in pattern for ch in _GLOB_CHARS)


def required_match(entry: str, path: str) -> bool:
    """Whether `path` satisfies a required entry: an exact path only by being that path, a glob by matching."""
    return glob_match(entry, path) if is_glob(entry) else path == entry


def _brackets_balanced(pattern: str) -> bool:
    """Every `[` is closed by a `]` in the same folder name, no class is empty, and no `]` stands alone."""
    start = -1
    for i, ch in enumerate(pattern):
        if start < 0:
            if ch == "]":
                return False
            if ch == "[":
                start = i
        elif ch == "/":
            return False
        elif ch == "]":
            if i == start + 1 or (i == start + 2 and pattern[start + 1] in "!^"):
                return False
            start = -1
    return start < 0


@lru_cache(maxsize=1024)
def _matcher(pattern: str) -> re.Pattern[str] | None:
    return None if glob_problem(pattern) else _compile(pattern)


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
    """pathspec's regex for the pattern, minus gitignore's "a name also matches a folder's contents"."""
    # A leading '#' would make it a comment; backslashes are refused in patterns, so this escape is ours.
    source = "\\" + pattern if pattern.startswith("#") else pattern
    regex, include = GitWildMatchPattern.pattern_to_regex(source)
    if regex is None or include is not True:
        raise GitWildMatchPatternError(f"pathspec reads {pattern!r} as no pattern")
    if not pattern.endswith("/") and f"(?P<{_DIR_MARK}>" in regex:
        # The named group matches '/' plus anything beneath a folder of that name; a file pattern must not use it.
        regex += f"(?({_DIR_MARK})(?!))"
    return re.compile(regex)
