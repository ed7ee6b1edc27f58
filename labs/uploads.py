"""Validation of uploaded submissions. Pure functions: no database, no writes.

An upload is either a zip archive or a list of (path, data) files from a multi-file or drag-and-drop upload.
Everything wrong with it is collected and reported at once, so a learner fixes all problems in one go.
Nothing from the archive is trusted: names, modes, and declared sizes are all checked, and members are
decompressed with a hard byte budget.
"""

from __future__ import annotations

import hashlib
import io
import re
import stat
import unicodedata
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from labs.errors import LearnerError
from labs.globs import globs_match_any, required_match

if TYPE_CHECKING:
    from labs.labspec import FilesSpec

MAX_DEPTH = 8  # folders deep; an upload-only limit, not part of lab.yaml
# Deflate tops out near 1032:1; ordinary source code compresses 3-10:1.
MAX_COMPRESSION_RATIO = 100
# Tiny members (a file of blank lines) may legitimately compress well; the ratio check starts above this.
RATIO_CHECK_MIN_BYTES = 4096
_CHUNK = 64 * 1024
# Junk some archivers add; dropped silently rather than failing the allowed-files check.
_JUNK_PREFIXES = ("__MACOSX/",)
_JUNK_NAMES = {".DS_Store", "Thumbs.db"}
# `C:\x` and `C:/x` are absolute on Windows; `a:b.py` is not, it holds a ':' (reported as such).
_WINDOWS_ABSOLUTE = re.compile(r"^[A-Za-z]:[\\/]")
# Characters Windows refuses in file names (besides '\' and '/', reported as path problems).
_WINDOWS_FORBIDDEN = '<>:"|?*'
# Bidirectional controls reorder how the text after them is displayed: `evil<U+202E>gpj.py` shows as
# `evilyp.jpg`, and a reviewer reads a name that is not the real one.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Characters that draw nothing although Unicode files them as letters, marks or symbols; the invisible format
# characters (zero-width space and joiners, word joiner, BOM, soft hyphen...) are found by their category, Cf.
_INVISIBLE_GLYPHS = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0")
_UNIX_FILE_TYPES = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFSOCK: "a socket",
}


class UploadRejected(LearnerError):
    """The upload was refused before anything was stored; `problems` lists every reason."""

    def __init__(self, problems: Sequence[str]) -> None:
        count = len(problems)
        super().__init__(
            f"The upload was rejected ({count} problem{'s' if count != 1 else ''}).",
            "Fix every problem listed and upload again. A rejected upload does not use up a revision.",
            problems=problems,
        )


def _files_default(name: str) -> Any:
    """The default of lab.yaml's `files.<name>`, read from FilesSpec so it is written down once. Imported late:
    labs.labspec needs Django, this module does not."""
    from labs.labspec import FilesSpec

    value = getattr(FilesSpec(), name)
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class UploadRules:
    """What an upload may hold: `UploadRules.for_files(lab_spec.files)`; `UploadRules()` has lab.yaml's defaults."""

    required: tuple[str, ...] = field(default_factory=lambda: _files_default("required"))
    allowed: tuple[str, ...] = field(default_factory=lambda: _files_default("allowed"))
    max_file_bytes: int = field(default_factory=lambda: _files_default("max_file_bytes"))
    max_total_bytes: int = field(default_factory=lambda: _files_default("max_total_bytes"))
    max_files: int = field(default_factory=lambda: _files_default("max_files"))
    max_depth: int = MAX_DEPTH

    @classmethod
    def for_files(cls, files: FilesSpec) -> UploadRules:
        """Rules from a lab's validated `files:` section (a labs.labspec.FilesSpec)."""
        return cls(
            required=tuple(files.required),
            allowed=tuple(files.allowed),
            max_file_bytes=int(files.max_file_bytes),
            max_total_bytes=int(files.max_total_bytes),
            max_files=int(files.max_files),
        )

    @property
    def max_archive_bytes(self) -> int:
        # A zip of incompressible files is slightly bigger than its content; allow for headers.
        return self.max_total_bytes + 64 * 1024 + self.max_files * 512


@dataclass(frozen=True)
class ValidatedTree:
    files: list[tuple[str, bytes, str]]  # (path, data, sha256), sorted by path
    total_bytes: int
    tree_sha256: str

    def manifest(self) -> list[dict[str, Any]]:
        return [{"path": path, "size": len(data), "sha256": digest} for path, data, digest in self.files]


@dataclass
class _Collector:
    problems: list[str] = field(default_factory=list)

    def add(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)


def tree_digest(entries: Sequence[tuple[str, str]]) -> str:
    """sha256 over the sorted (path, file sha256) list, one `<sha256>  <path>` line each (sha256sum's format)."""
    lines = "".join(f"{digest}  {path}\n" for path, digest in sorted(entries))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def validate_upload(upload: Any, *, rules: UploadRules) -> ValidatedTree:
    """Accept bytes or a binary file (a zip), or a list of (path, data) files; a one-item list holding a .zip
    is treated as the archive, which is what a learner dropping a single zip on the form sends."""
    if isinstance(upload, list | tuple):
        if len(upload) == 1 and str(upload[0][0]).lower().endswith(".zip"):
            return validate_archive(upload[0][1], rules=rules)
        return validate_files(upload, rules=rules)
    return validate_archive(upload, rules=rules)


def validate_files(files: Sequence[tuple[str, bytes | IO[bytes]]], *, rules: UploadRules) -> ValidatedTree:
    """Validate a multi-file upload. Data may be bytes or a file object; a file object whose `size` is over the
    per-file cap is never read."""
    found = _Collector()
    entries: list[tuple[str, bytes]] = []
    names: list[str] = []  # every safe path, also of files too large to read, for the set-of-paths checks
    if not files:
        found.add("The upload is empty: choose the files of your submission or a .zip of them.")
    if len(files) > rules.max_files:
        found.add(f"The upload has {len(files)} files; this lab accepts at most {rules.max_files}.")
    total = 0
    for raw_name, data in files[: rules.max_files * 2]:
        name = str(raw_name)
        path = _check_path(name, found, rules.max_depth)
        if path is not None and not _is_junk(path):
            names.append(path)
        size = len(data) if isinstance(data, bytes | bytearray) else getattr(data, "size", None)
        if size is not None and size > rules.max_file_bytes:
            found.add(_too_big(path or name, size, rules))
            total += size
            continue
        content = bytes(data) if isinstance(data, bytes | bytearray) else data.read(rules.max_file_bytes + 1)
        if len(content) > rules.max_file_bytes:
            found.add(f"{path or name!r} is larger than the per-file cap of {rules.max_file_bytes} bytes.")
        total += len(content)
        if path is not None and not _is_junk(path):
            entries.append((path, content))
    for raw_name, _data in files[rules.max_files * 2 :]:
        # Never read, already reported as too many files: their names still count for the required files, so a
        # required file at the end of a long list is not also reported missing.
        path = _check_path(str(raw_name), _Collector(), rules.max_depth)
        if path is not None and not _is_junk(path):
            names.append(path)
    if total > rules.max_total_bytes:
        found.add(f"The files add up to {total} bytes; this lab accepts at most {rules.max_total_bytes} bytes in all.")
    return _finish(entries, found, rules, names)


def validate_archive(archive: bytes | IO[bytes], *, rules: UploadRules) -> ValidatedTree:
    """Validate a zip archive and return its files, or raise UploadRejected listing every problem."""
    found = _Collector()
    data = archive if isinstance(archive, bytes | bytearray) else archive.read(rules.max_archive_bytes + 1)
    data = bytes(data)
    if len(data) > rules.max_archive_bytes:
        raise UploadRejected(
            [
                f"The archive is larger than {rules.max_archive_bytes} bytes; this lab accepts at most "
                f"{rules.max_total_bytes} bytes of files."
            ]
        )
    kind = _sniff_non_zip(data)
    if kind:
        raise UploadRejected([f"This is {kind}; only .zip archives are accepted. Zip the folder and upload the .zip."])
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except UnicodeDecodeError:
        raise UploadRejected(
            ["A file name in the archive is marked as UTF-8 but is not valid UTF-8. Rename the file and zip again."]
        ) from None
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise UploadRejected([f"This is not a readable zip archive ({exc}). Create the .zip again."]) from None

    with zf:
        infos = zf.infolist()
        members = [info for info in infos if not info.is_dir()]
        if len(members) > rules.max_files:
            found.add(f"The archive holds {len(members)} files; this lab accepts at most {rules.max_files}.")
        declared_total = sum(info.file_size for info in members)
        if declared_total > rules.max_total_bytes:
            found.add(
                f"The archive expands to {declared_total} bytes; this lab accepts at most {rules.max_total_bytes} "
                "bytes in all (zip bomb?)."
            )
        seen_offsets: dict[int, str] = {}
        readable: list[tuple[zipfile.ZipInfo, str]] = []
        names: list[str] = []
        for info in infos:
            ok = True
            name = _zip_member_name(info, found)
            path = _check_path(name, found, rules.max_depth) if name is not None else None
            ok = ok and path is not None
            label = path or name or "?"
            if info.flag_bits & 0x1:
                found.add(f"{label!r} is encrypted; upload files without a password.")
                ok = False
            kind = _unix_special_type(info)
            if kind:
                found.add(f"{label!r} is {kind}; only regular files are accepted.")
                ok = False
            if info.is_dir():
                continue
            if path is not None and not _is_junk(path):
                names.append(path)
            if info.header_offset in seen_offsets:
                found.add(
                    f"{label!r} and {seen_offsets[info.header_offset]!r} share the same data (a hard link or "
                    "overlapping entries); only regular files are accepted."
                )
                ok = False
            seen_offsets.setdefault(info.header_offset, label)
            if info.file_size > rules.max_file_bytes:
                found.add(_too_big(label, info.file_size, rules))
                ok = False
            elif info.file_size > RATIO_CHECK_MIN_BYTES and info.file_size > MAX_COMPRESSION_RATIO * max(
                info.compress_size, 1
            ):
                found.add(
                    f"{label!r} compresses {info.file_size // max(info.compress_size, 1)}:1, over the "
                    f"{MAX_COMPRESSION_RATIO}:1 bound for a single file (zip bomb?)."
                )
                ok = False
            if ok and path is not None and not _is_junk(path):
                readable.append((info, path))

        entries: list[tuple[str, bytes]] = []
        # Decompress only when the archive passed the cheap checks: a bomb is never expanded at all.
        if not found.problems:
            budget = rules.max_total_bytes
            for info, path in readable:
                content = _read_member(zf, info, path, min(rules.max_file_bytes, budget), found)
                if content is None:
                    break
                budget -= len(content)
                entries.append((path, content))
    return _finish(entries, found, rules, names)


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str, budget: int, found: _Collector) -> bytes | None:
    """Stream-decompress one member, stopping as soon as it exceeds `budget` whatever its header declares."""
    chunks: list[bytes] = []
    size = 0
    try:
        with zf.open(info) as stream:
            while chunk := stream.read(_CHUNK):
                size += len(chunk)
                if size > budget:
                    found.add(f"{path!r} expands beyond the size caps of this lab (zip bomb?).")
                    return None
                chunks.append(chunk)
    except NotImplementedError:
        found.add(f"{path!r} uses a compression method that is not supported; use ordinary zip (deflate).")
        return None
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        found.add(f"{path!r} is corrupt in the archive ({exc}); create the .zip again.")
        return None
    return b"".join(chunks)


def _finish(
    entries: list[tuple[str, bytes]], found: _Collector, rules: UploadRules, paths: list[str] | None = None
) -> ValidatedTree:
    """Checks on the set of paths, then the result. `paths` lists every safe member name, also those that were
    not decompressed because of other problems, so the learner sees all problems at once."""
    entries = _strip_common_folder(entries, rules)
    if paths is None:
        paths = [path for path, _ in entries]
    else:
        paths = [path for path, _ in _strip_common_folder([(p, b"") for p in paths], rules)]
    seen: dict[str, str] = {}
    for path in paths:
        key = path.casefold()
        if key in seen:
            if seen[key] == path:
                found.add(f"{path!r} appears more than once.")
            else:
                found.add(f"{seen[key]!r} and {path!r} differ only in upper/lower case; keep one of them.")
        else:
            seen[key] = path
    # A file and a folder of the same name cannot both exist on disk.
    folders = {"/".join(p.split("/")[:i]) for p in paths for i in range(1, p.count("/") + 1)}
    for path in paths:
        if path in folders:
            found.add(f"{path!r} is both a file and a folder.")
    for path in paths:
        allowed = globs_match_any(rules.allowed, path)
        if not allowed and not any(required_match(req, path) for req in rules.required):
            found.add(f"{path!r} is not one of the files this lab accepts ({', '.join(rules.allowed)}).")
    for required in rules.required:
        if not any(required_match(required, path) for path in paths):
            found.add(f"The required file {required!r} is missing.")
    if found.problems:
        raise UploadRejected(found.problems)
    files = sorted((path, data, hashlib.sha256(data).hexdigest()) for path, data in entries)
    return ValidatedTree(
        files=files,
        total_bytes=sum(len(data) for _, data, _ in files),
        tree_sha256=tree_digest([(path, digest) for path, _, digest in files]),
    )


def _strip_common_folder(entries: list[tuple[str, bytes]], rules: UploadRules) -> list[tuple[str, bytes]]:
    """Zipping or dropping a folder puts everything under `folder/`; strip it when that is what makes the
    required files line up, so the learner need not know how their archiver works."""
    if not entries or not rules.required:
        return entries
    tops = {path.split("/", 1)[0] for path, _ in entries}
    if len(tops) != 1 or any("/" not in path for path, _ in entries):
        return entries
    stripped = [(path.split("/", 1)[1], data) for path, data in entries]

    def hits(items: list[tuple[str, bytes]]) -> int:
        return sum(any(required_match(req, path) for path, _ in items) for req in rules.required)

    return stripped if hits(stripped) > hits(entries) else entries


def _check_path(name: str, found: _Collector, max_depth: int = MAX_DEPTH) -> str | None:
    """Return the normalised relative path, or None after recording why the name is refused.

    First its shape: a path that is absolute or leaves the submission's root is refused for that alone. Then
    every problem of its characters, each named with the character at fault: what would mislead a reviewer
    (bidirectional controls, invisible characters, look-alike spaces, spaces at the edges), break on a common
    file system (control characters, Windows' forbidden ones) or read as a command-line option (a leading '-').
    """
    if name == "" or name.strip("/") == "":
        found.add("A file has an empty name.")
        return None
    shape = _shape_problem(name, max_depth)
    problems = [shape] if shape is not None else _character_problems(name) + _segment_problems(name)
    for problem in problems:
        found.add(problem)
    if problems:
        return None
    return "/".join(name.rstrip("/").split("/"))


def _shape_problem(name: str, max_depth: int) -> str | None:
    if name.startswith(("/", "\\")) or _WINDOWS_ABSOLUTE.match(name):
        return f"{_quoted(name)} is an absolute path; paths must be relative to the submission's root."
    if "\\" in name:
        return f"{_quoted(name)} contains a backslash; use '/' between folders."
    parts = name.rstrip("/").split("/")
    if ".." in parts:
        return f"{_quoted(name)} points outside the submission's root ('..')."
    if any(part in ("", ".") for part in parts):
        return f"{_quoted(name)} has an empty or '.' path component; use a plain relative path."
    if len(parts) > max_depth:
        return f"{_quoted(name)} is nested {len(parts)} levels deep; at most {max_depth} are accepted."
    # surrogatepass: a lone surrogate (refused below) must not crash the count.
    if any(len(part.encode("utf-8", "surrogatepass")) > 255 for part in parts):
        return f"{_quoted(name)} has a path component longer than 255 bytes."
    return None


def _character_problems(name: str) -> list[str]:
    """One message per kind of refused character in `name`, naming each character found."""
    kinds: dict[str, list[str]] = {}
    for ch in name:
        kind = _character_kind(ch)
        if kind is not None and ch not in kinds.setdefault(kind, []):
            kinds[kind].append(ch)
    shown = _quoted(name)
    problems = []
    if "control" in kinds:
        problems.append(f"{shown} contains control characters ({_described(kinds['control'])}); rename it.")
    if "bidi" in kinds:
        problems.append(
            f"{shown} contains a bidirectional text control ({_described(kinds['bidi'])}), which makes the name "
            "display in another order than it really has; rename the file without it."
        )
    if "invisible" in kinds:
        problems.append(
            f"{shown} contains an invisible character ({_described(kinds['invisible'])}), so it can look exactly "
            "like another name; rename the file without it."
        )
    if "space" in kinds:
        problems.append(
            f"{shown} contains a space that is not the ordinary space ({_described(kinds['space'])}), so it can "
            "look exactly like another name; use an ordinary space or none."
        )
    if "unencodable" in kinds:
        # surrogateescape carries an undecodable byte b as U+DC00 + b.
        raw = ", ".join(
            f"0x{ord(ch) - 0xDC00:02X}" if 0xDC80 <= ord(ch) <= 0xDCFF else f"U+{ord(ch):04X}"
            for ch in kinds["unencodable"]
        )
        problems.append(f"{shown} contains bytes that are not valid UTF-8 ({raw}); rename it using UTF-8 characters.")
    if "windows" in kinds:
        chars = " and ".join(repr(ch) for ch in kinds["windows"])
        problems.append(
            f"{shown} contains {chars}, which Windows does not allow in file names (it refuses "
            f"{' '.join(_WINDOWS_FORBIDDEN)}); rename it."
        )
    return problems


def _character_kind(ch: str) -> str | None:
    if ch in _BIDI_CONTROLS:
        return "bidi"
    if ch in _WINDOWS_FORBIDDEN:
        return "windows"
    category = unicodedata.category(ch)
    if category == "Cc":
        return "control"
    if category == "Cs":
        return "unencodable"  # a lone surrogate, such as an undecodable byte kept by surrogateescape
    if category == "Cf" or ch in _INVISIBLE_GLYPHS:
        return "invisible"
    if category in ("Zs", "Zl", "Zp") and ch != " ":
        return "space"
    return None


def _segment_problems(name: str) -> list[str]:
    """Spaces and dashes at the edges of a file or folder name: invisible in most listings, or read as an option
    (`-rf.py`) by the command-line tools a reviewer or grader runs."""
    problems = []
    for segment in name.rstrip("/").split("/"):
        if segment in ("", ".", ".."):
            continue  # reported as the path's shape
        where = _quoted(name) if segment == name.rstrip("/") else f"{_quoted(name)}: the name {_quoted(segment)}"
        if segment.startswith(" "):
            problems.append(f"{where} starts with a space, which is easy to miss; remove it.")
        elif segment.endswith(" "):
            problems.append(f"{where} ends with a space, which is easy to miss and refused on Windows; remove it.")
        if segment.startswith("-"):
            problems.append(f"{where} starts with '-', so command-line tools would take it for an option; rename it.")
    return problems


def _quoted(name: str) -> str:
    """repr() of a name, with the invisible characters repr() leaves as they are escaped too."""
    return "".join(f"\\u{ord(ch):04x}" if ch in _INVISIBLE_GLYPHS else ch for ch in repr(name))


def _described(chars: list[str]) -> str:
    return ", ".join(f"U+{ord(ch):04X} {unicodedata.name(ch, '')}".rstrip() for ch in chars)


def _zip_member_name(info: zipfile.ZipInfo, found: _Collector) -> str | None:
    name = info.orig_filename
    if info.flag_bits & 0x800:
        return name  # zipfile already decoded it as UTF-8
    # Without the UTF-8 flag, zipfile decoded the raw bytes as cp437; many archivers still write UTF-8 there.
    raw = name.encode("cp437")
    if raw.isascii():
        return name
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        found.add(f"The file name {raw!r} is not valid UTF-8; rename it using UTF-8 characters and zip it again.")
        return None


def _unix_special_type(info: zipfile.ZipInfo) -> str | None:
    mode = info.external_attr >> 16
    if not mode:
        return None
    return _UNIX_FILE_TYPES.get(stat.S_IFMT(mode))


def _sniff_non_zip(data: bytes) -> str | None:
    if len(data) > 262 and data[257:262] == b"ustar":
        return "a tar archive"
    if data[:2] == b"\x1f\x8b":
        return "a gzip file (.tar.gz?)"
    if data[:3] == b"BZh":
        return "a bzip2 file"
    if data[:6] == b"\xfd7zXZ\x00":
        return "an xz file"
    if data[:6] == b"7z\xbc\xaf\x27\x1c":
        return "a 7-Zip archive"
    if data[:4] == b"Rar!":
        return "a RAR archive"
    return None


def _is_junk(path: str) -> bool:
    return path.startswith(_JUNK_PREFIXES) or path.rsplit("/", 1)[-1] in _JUNK_NAMES


def _too_big(label: str, size: int, rules: UploadRules) -> str:
    return f"{label!r} is {size} bytes; the per-file cap is {rules.max_file_bytes} bytes."
