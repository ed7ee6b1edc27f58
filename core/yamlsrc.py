"""YAML parsing that remembers where each key sits, so problems can name a file line.

Used by the course loader (course.yaml, lesson front matter, quizzes) and by the labs app (lab.yaml). The
`CourseProblem` these report is defined here so both can use it without importing each other.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml


@dataclass(frozen=True)
class CourseProblem:
    """One problem found in a course directory.

    `file` is relative to the course directory (posix separators), `line` is 1-based or None when the problem
    is about a whole file or folder.
    """

    file: str
    line: int | None
    message: str
    hint: str

    def format(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message} (hint: {self.hint})" if self.hint else f"{where}: {self.message}"


# The C loader is an order of magnitude faster on 1,000 front matters and keeps the same marks.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Path_ = tuple[Any, ...]


@dataclass
class YamlDoc:
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    first_line: int = 1

    def line(self, path: Path_) -> int:
        """Line of the key at `path`, or of its nearest parent that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.first_line


def parse_yaml(
    text: str, *, file: str, problems: list[CourseProblem], line_offset: int = 0, what: str = "YAML"
) -> YamlDoc | None:
    """Parse one YAML document; on a syntax error add a problem at the error's line and return None."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        uneven = _uneven_list(text, mark.line) if mark is not None and exc.problem_mark is not None else None
        if uneven is not None:
            first, first_indent, item_indent = uneven
            later = mark.line + 1 + line_offset
            problems.append(
                CourseProblem(
                    file,
                    first + 1 + line_offset,
                    f"invalid {what}: this list item is indented {_spaces(first_indent)} but the item on line "
                    f"{later} is indented {_spaces(item_indent)}, so YAML cannot read them as one list",
                    f"indent every item of the list the same: move this `- ` to {_spaces(item_indent)} like "
                    f"line {later} (or indent line {later} like this one)",
                )
            )
            return None
        line = mark.line + 1 + line_offset if mark is not None else None
        detail = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        problems.append(
            CourseProblem(
                file,
                line,
                f"invalid {what}: {detail or exc}",
                "check indentation and quoting on this line; values containing ': ' or starting with "
                "'*', '&', '!', '[' or '{' must be quoted",
            )
        )
        return None
    except yaml.YAMLError as exc:
        problems.append(CourseProblem(file, line_offset + 1 or None, f"invalid {what}: {exc}", "fix the YAML syntax"))
        return None
    finally:
        loader.dispose()
    doc = YamlDoc(data=data, first_line=line_offset + 1)
    if node is not None:
        doc.first_line = node.start_mark.line + 1 + line_offset
        _walk(node, (), doc.lines, line_offset, file, problems)
        problems.extend(merged_list_items(node, text, file=file, line_offset=line_offset))
    return doc


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _spaces(count: int) -> str:
    return "1 space" if count == 1 else f"{count} spaces"


def _is_item(line: str) -> bool:
    stripped = line.lstrip(" ")
    return stripped == "-" or stripped.startswith("- ")


def _uneven_list(text: str, error_line: int) -> tuple[int, int, int] | None:
    """(0-based line, its indent, the error item's indent) when a syntax error at `error_line` comes from a list
    whose first item is indented more than a later one.

    `key:` / `    - a` / `  - b` is a syntax error that the parser reports at `- b`, the item that is right;
    the item to fix is the first one, which set the list's deeper indentation.
    """
    lines = text.split("\n")
    if error_line >= len(lines) or not _is_item(lines[error_line]):
        return None
    indent = _indent(lines[error_line])
    first = None
    for index in range(error_line - 1, -1, -1):
        line = lines[index]
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if _indent(line) <= indent and not (_indent(line) == indent and _is_item(line)):
            break  # the key the list belongs to
        if _indent(line) <= indent:
            return None  # an item at the same indentation above: the list itself is even
        first = index
    if first is None or not _is_item(lines[first]):
        return None
    return first, _indent(lines[first]), indent


def yaml_merged_list_items(text: str, *, file: str, line_offset: int = 0) -> list[CourseProblem]:
    """`merged_list_items` for YAML text that is parsed elsewhere (a quiz body); nothing when it does not parse
    (the parser that reads it reports that)."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return []
    return merged_list_items(node, text, file=file, line_offset=line_offset) if node is not None else []


def merged_list_items(node: yaml.Node, text: str, *, file: str, line_offset: int = 0) -> list[CourseProblem]:
    """Lines that look like list items but that YAML folded into the plain text above them.

    `- a` followed by a more indented `- b` is not two items: YAML reads "a - b", silently. Only plain
    (unquoted, non-block) scalars fold like that, so `|`, `>` and quoted text are never reported.
    """
    lines = text.split("\n")
    out: list[CourseProblem] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, yaml.MappingNode):
            stack.extend(value for pair in reversed(current.value) for value in reversed(pair))
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(reversed(current.value))
        elif isinstance(current, yaml.ScalarNode) and not current.style:
            for index in range(current.start_mark.line + 1, min(current.end_mark.line + 1, len(lines))):
                stripped = lines[index].lstrip()
                if stripped == "-" or stripped.startswith("- "):
                    out.append(
                        CourseProblem(
                            file,
                            index + 1 + line_offset,
                            "this line reads as part of the previous item's text, not as a new list item "
                            f"(YAML reads the item above as {_clip(current.value)!r})",
                            "indent this `- ` exactly like the item above it; if the dash belongs to the text, "
                            "quote the whole text",
                        )
                    )
    return out


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _walk(
    node: yaml.Node, path: Path_, lines: dict[Path_, int], offset: int, file: str, problems: list[CourseProblem]
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node.value)
            line = key_node.start_mark.line + 1 + offset
            if key in seen:
                # PyYAML silently keeps the last value; an author almost never means that.
                problems.append(
                    CourseProblem(file, line, f"key {key!r} appears twice", "remove or rename one of the two keys")
                )
            seen.add(key)
            lines[(*path, key)] = line
            _walk(value_node, (*path, key), lines, offset, file, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1 + offset
            _walk(item, (*path, index), lines, offset, file, problems)


SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_MISSING = object()


class Checker:
    """Reads typed fields out of a parsed YAML mapping, adding a problem (with line and hint) for each bad one."""

    def __init__(self, *, file: str, doc: YamlDoc, problems: list[CourseProblem]) -> None:
        self.file = file
        self.doc = doc
        self.problems = problems

    def add(self, path: Path_, message: str, hint: str) -> None:
        self.problems.append(CourseProblem(self.file, self.doc.line(path), message, hint))

    def mapping(self, value: Any, path: Path_, what: str) -> dict | None:
        if isinstance(value, dict):
            return value
        self.add(path, f"{what} must be a mapping of `name: value` lines, got {_kind(value)}", _MAPPING_HINT)
        return None

    def unknown_keys(self, mapping: dict, path: Path_, known: Iterable[str], what: str) -> None:
        known = list(known)
        for key in mapping:
            if key in known:
                continue
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = (
                f"did you mean {close[0]!r}?" if close else f"remove it; the fields of {what} are: {', '.join(known)}"
            )
            self.add((*path, key), f"unknown field {key!r} in {what}", hint)

    def _get(self, mapping: dict, path: Path_, key: str, required: bool, what: str) -> Any:
        if key not in mapping or mapping[key] is None:
            if required:
                self.add(path, f"{what} is missing the required field {key!r}", f"add a line `{key}: …` to {what}")
            return _MISSING
        return mapping[key]

    def text(
        self,
        mapping: dict,
        path: Path_,
        key: str,
        *,
        what: str,
        required: bool = False,
        default: str = "",
        max_len: int | None = None,
    ) -> str:
        value = self._get(mapping, path, key, required, what)
        if value is _MISSING:
            return default
        if isinstance(value, bool | dict | list):
            self.add((*path, key), f"{key!r} must be text, got {_kind(value)}", "write the value as plain text")
            return default
        value = str(value).strip()
        if required and not value:
            self.add((*path, key), f"{key!r} must not be empty", f"write a {key} after `{key}:`")
        if max_len is not None and len(value) > max_len:
            self.add((*path, key), f"{key!r} is {len(value)} characters long, the maximum is {max_len}", "shorten it")
            return value[:max_len]
        return value

    def slug(
        self, mapping: dict, path: Path_, key: str, *, what: str, required: bool = False, default: str = ""
    ) -> str:
        value = self.text(mapping, path, key, what=what, required=required, default=default, max_len=100)
        if value and not SLUG_RE.match(value):
            self.add(
                (*path, key),
                f"{key} {value!r} is not a valid slug",
                f"use lower-case letters, digits and single hyphens, e.g. {_slugify(value)!r}",
            )
        return value

    def str_list(self, mapping: dict, path: Path_, key: str, *, what: str) -> list[str]:
        value = self._get(mapping, path, key, False, what)
        if value is _MISSING:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.add((*path, key), f"{key!r} must be a list of text, got {_kind(value)}", _LIST_HINT)
            return []
        out = []
        for index, item in enumerate(value):
            if isinstance(item, dict | list) or item is None:
                self.add(
                    (*path, key, index), f"item {index + 1} of {key!r} must be text, got {_kind(item)}", _LIST_HINT
                )
            else:
                out.append(str(item))
        return out

    def integer(
        self,
        mapping: dict,
        path: Path_,
        key: str,
        *,
        what: str,
        required: bool = False,
        default: int | None = None,
        minimum: int | None = None,
        maximum: int | None = None,
        max_hint: str = "",
    ) -> int | None:
        value = self._get(mapping, path, key, required, what)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.add((*path, key), f"{key!r} must be a whole number, got {value!r}", f"write e.g. `{key}: 30`")
            return default
        if minimum is not None and value < minimum:
            self.add((*path, key), f"{key!r} is {value}, it must be at least {minimum}", f"use a value >= {minimum}")
            return default
        if maximum is not None and value > maximum:
            self.add(
                (*path, key),
                f"{key!r} is {value}, above the platform maximum of {maximum}",
                max_hint or f"use a value <= {maximum}",
            )
            return default
        return value

    def number(
        self,
        mapping: dict,
        path: Path_,
        key: str,
        *,
        what: str,
        default: float,
        minimum_exclusive: float | None = None,
        minimum: float | None = None,
        maximum: float | None = None,
        max_hint: str = "",
    ) -> float:
        value = self._get(mapping, path, key, False, what)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add((*path, key), f"{key!r} must be a number, got {value!r}", f"write e.g. `{key}: 1`")
            return default
        if minimum_exclusive is not None and value <= minimum_exclusive:
            self.add(
                (*path, key),
                f"{key!r} is {value}, it must be greater than {minimum_exclusive:g}",
                "use a positive value",
            )
            return default
        if minimum is not None and value < minimum:
            self.add(
                (*path, key), f"{key!r} is {value}, it must be at least {minimum:g}", f"use a value >= {minimum:g}"
            )
            return default
        if maximum is not None and value > maximum:
            self.add(
                (*path, key),
                f"{key!r} is {value}, above the platform maximum of {maximum:g}",
                max_hint or f"use a value <= {maximum:g}",
            )
            return default
        return float(value)

    def choice(
        self,
        mapping: dict,
        path: Path_,
        key: str,
        choices: Iterable[str],
        *,
        what: str,
        default: str = "",
        required: bool = False,
    ) -> str:
        choices = list(choices)
        value = self.text(mapping, path, key, what=what, required=required, default=default)
        if value and value not in choices:
            close = difflib.get_close_matches(value, choices, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}? " if close else ""
            self.add((*path, key), f"unknown {key} {value!r}", f"{hint}use one of: {', '.join(choices)}")
            return default
        return value


_MAPPING_HINT = "write one `name: value` per line, indented under its parent"
_LIST_HINT = "write a YAML list, one `- item` per line"


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "text", bool: "true/false", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


def _slugify(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-") or "my-slug"
