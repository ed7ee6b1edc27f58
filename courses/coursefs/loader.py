"""Read a course directory into `CourseSpec`, collecting every problem instead of stopping at the first.

Reading is defensive: nothing outside the course directory is read (symlinks leaving it are reported), text files
and bundles are size-capped, and files must be UTF-8.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import os
import posixpath
import re
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from pygments.lexers import get_all_lexers

from core.yamlsrc import SLUG_RE, Checker, parse_yaml, yaml_merged_list_items
from courses.coursefs.assets import (
    MAX_ASSET_BYTES,
    MAX_COURSE_ASSET_BYTES,
    AssetProblem,
    asset_kind,
    content_problem,
    media_type,
    name_problem,
)
from courses.coursefs.spec import (
    EMPTY_TREE_DIGEST,
    REFERENCE_KINDS,
    AssetSpec,
    CourseSpec,
    LabEntry,
    LessonSpec,
    LoadResult,
    Rendered,
    TreeDigest,
    UnitSpec,
    lesson_url,
)
from courses.errors import CourseProblem
from courses.extensions import course_labs
from courses.markdown import RENDERER_VERSION, render_inline_markdown, render_markdown
from courses.markdown.highlight import PLAIN_TEXT, is_known_language

MAX_TEXT_BYTES = 1024 * 1024  # one lesson or YAML file
MAX_BUNDLE_FILE_BYTES = 20 * 1024 * 1024  # one file in starter/ or grader/
MAX_BUNDLE_BYTES = 100 * 1024 * 1024
MAX_BUNDLE_FILES = 5000

COURSE_FIELDS = ("slug", "title", "summary", "unit_label", "units")
UNIT_FIELDS = ("slug", "title", "summary", "number", "label", "track")
LESSON_FIELDS = (
    "title",
    "slug",
    "tagline",
    "objective",
    "deliverable",
    "outcomes",
    "prerequisites",
    "estimated_minutes",
    "references",
    "reflection",
)
REFERENCE_FIELDS = ("kind", "title", "url", "description")
SECOND_LINE_FIELDS = ("text", "detail")
_NO_LABS_HINT = "add 'labs' to INSTALLED_APPS, or remove the lab folder from the course"
BLOCK_NAMES = ("quiz", "stages", "compare")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_NUMBER_PREFIX = re.compile(r"^\d+[-_]")
# Offered as close matches for a misspelt fence name (pygments knows hundreds; these are the likely intents).
_COMMON_LANGUAGES = (
    "python",
    "bash",
    "shell",
    "console",
    "text",
    "yaml",
    "json",
    "toml",
    "ini",
    "sql",
    "javascript",
    "typescript",
    "html",
    "css",
    "dockerfile",
    "go",
    "rust",
    "java",
    "c",
    "cpp",
    "diff",
    "markdown",
    "pycon",
)
_HEADING_ID = re.compile(r'<h[1-6][^>]*\sid="([^"]+)"')
_BROKEN_LINK = "broken internal link: "  # how the renderer words a link to no lesson (courses.markdown.render)
HEADER_TEXT_FIELDS = ("tagline", "objective", "objective_detail", "deliverable", "deliverable_detail", "reflection")


class RenderCache(Protocol):
    """Where rendered documents from earlier imports are kept (the importer passes a database-backed one)."""

    def lookup(self, keys: list[str]) -> dict[str, Rendered]: ...


def load_course(path: str | os.PathLike[str], *, render_cache: RenderCache | None = None) -> LoadResult:
    """Read and validate the course directory at `path`. Touches no database unless `render_cache` does."""
    return _CourseReader(Path(path), render_cache).load()


def render_key(*, course: str, file: str, offset: int, body: str) -> str:
    """Cache key of a rendered body.

    Besides the renderer version and the source, it names the file and its line offset: relative links resolve
    against the file's folder and problem/quiz line numbers include the offset, so both shape the output.
    """
    material = "\0".join((RENDERER_VERSION, course, file, str(offset), body))
    return hashlib.sha256(material.encode()).hexdigest()


class _CourseReader:
    def __init__(self, path: Path, render_cache: RenderCache | None) -> None:
        self.given = path
        self.root = path.resolve()
        self.cache = render_cache
        self.problems: list[CourseProblem] = []
        self.file_digests: dict[str, str] = {}
        self.listed: set[str] = set()  # every unit slug named in course.yaml, even ones with problems
        self.asset_results: dict[str, AssetSpec | AssetProblem] = {}  # by course-relative path, once per load
        self.asset_bytes = 0
        self.unreadable: set[str] = set()  # lesson files in listed units that could not be read (own problems)
        # Per lesson file: the file line of each front-matter text field (for problems in its Markdown) and the
        # internal links written in them (for the section check).
        self.header_lines: dict[str, dict[str, Any]] = {}
        self.header_links: dict[str, list[tuple[str, int]]] = {}

    # --- problems and safe reading -----------------------------------------------------------------------

    def problem(self, file: str, line: int | None, message: str, hint: str) -> None:
        self.problems.append(CourseProblem(file, line, message, hint))

    def _inside(self, target: Path) -> bool:
        return target == self.root or self.root in target.parents

    def _check_link(self, rel: str) -> Path | None:
        """For a symlink at `rel`: the file it points to if that is a regular file inside the course, else None."""
        target = (self.root / rel).resolve()
        if not self._inside(target):
            self.problem(
                rel,
                None,
                "symbolic link points outside the course directory and is not followed",
                "replace the link with a copy of the file it points to",
            )
            return None
        if target.is_dir():
            self.problem(rel, None, "symbolic links to folders are not followed", "replace the link with a real folder")
            return None
        return target if target.is_file() else None

    def read_text(self, rel: str, *, required_hint: str = "") -> str | None:
        path = self.root / rel
        try:
            st = path.lstat()
        except FileNotFoundError:
            if required_hint:
                self.problem(rel, None, "file is missing", required_hint)
            return None
        if stat.S_ISLNK(st.st_mode):
            target = self._check_link(rel)
            if target is None:
                return None
            path, st = target, target.stat()
        if not stat.S_ISREG(st.st_mode):
            self.problem(rel, None, "is not a regular file", "replace it with a plain text file")
            return None
        if st.st_size > MAX_TEXT_BYTES:
            self.problem(
                rel,
                None,
                f"file is {st.st_size} bytes, above the {MAX_TEXT_BYTES} byte limit for course text files",
                "split it into several lessons, or move large data into a lab's starter/ or grader/ folder",
            )
            return None
        data = path.read_bytes()
        self.file_digests[rel] = hashlib.sha256(data).hexdigest()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            self.problem(rel, line, "file is not valid UTF-8", "save the file with UTF-8 encoding")
            return None
        return text.removeprefix("\ufeff").replace("\r\n", "\n")

    def entries(self, rel: str) -> list[tuple[str, str]]:
        """(name, "dir" | "file") in a folder, sorted by name; hidden entries skipped, bad symlinks reported."""
        out = []
        with os.scandir(self.root / rel if rel else self.root) as it:
            for entry in sorted(it, key=lambda e: e.name):
                if entry.name.startswith("."):
                    continue
                child = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_symlink():
                    if self._check_link(child) is not None:
                        out.append((entry.name, "file"))
                elif entry.is_dir(follow_symlinks=False):
                    out.append((entry.name, "dir"))
                elif entry.is_file(follow_symlinks=False):
                    out.append((entry.name, "file"))
        return out

    # --- course.yaml ---------------------------------------------------------------------------------------

    def load(self) -> LoadResult:
        if not self.root.is_dir():
            self.problem(str(self.given), None, "course directory not found", "pass the folder that holds course.yaml")
            return LoadResult(None, self.problems)
        course = self._course_yaml()
        if course is None:
            return LoadResult(None, self.problems)
        self._unlisted_folders(course)
        for unit in course.units:
            self._unit(course, unit)
        self._duplicate_labs(course)
        self._render_all(course)
        self._render_headers(course)
        self._check_anchors(course)
        self._check_lab_links(course)
        self._hash_rows(course)
        return LoadResult(course, self.problems)

    def _course_yaml(self) -> CourseSpec | None:
        text = self.read_text(
            "course.yaml",
            required_hint="create course.yaml with at least slug, title and units (see the authoring guide)",
        )
        if text is None:
            return None
        doc = parse_yaml(text, file="course.yaml", problems=self.problems, what="course.yaml")
        if doc is None:
            return None
        c = Checker(file="course.yaml", doc=doc, problems=self.problems)
        root = c.mapping(doc.data, (), "course.yaml")
        if root is None:
            return None
        c.unknown_keys(root, (), COURSE_FIELDS, "course.yaml")
        course = CourseSpec(
            slug=c.slug(root, (), "slug", what="course.yaml", required=True),
            title=c.text(root, (), "title", what="course.yaml", required=True, max_len=200),
            summary=c.text(root, (), "summary", what="course.yaml"),
            unit_label=c.text(root, (), "unit_label", what="course.yaml", default="Unit", max_len=40) or "Unit",
            root=self.root,
        )
        units = root.get("units")
        if units is None:
            c.add((), "course.yaml is missing the required field 'units'", "add `units:` with one `- slug: …` per unit")
            return course
        if not isinstance(units, list):
            c.add(("units",), "units must be a list", "write one `- slug: … title: …` entry per unit")
            return course
        seen: dict[str, int] = {}
        for index, raw in enumerate(units):
            path = ("units", index)
            entry = c.mapping(raw, path, f"unit {index + 1}")
            if entry is None:
                continue
            c.unknown_keys(entry, path, UNIT_FIELDS, "a unit")
            slug = c.slug(entry, path, "slug", what=f"unit {index + 1}", required=True)
            title = c.text(entry, path, "title", what=f"unit {index + 1}", required=True, max_len=200)
            if not slug:
                continue
            self.listed.add(slug)
            line = doc.line((*path, "slug"))
            if slug in seen:
                c.add(
                    (*path, "slug"),
                    f"unit slug {slug!r} is listed twice (first at line {seen[slug]})",
                    "give every unit its own slug and folder",
                )
                continue
            seen[slug] = line
            number = c.integer(entry, path, "number", what="a unit", default=index + 1, minimum=0, maximum=9999)
            unit = UnitSpec(
                slug=slug,
                title=title,
                summary=c.text(entry, path, "summary", what="a unit"),
                position=index + 1,
                number=index + 1 if number is None else number,
                label=c.text(entry, path, "label", what="a unit", max_len=40),
                track=c.text(entry, path, "track", what="a unit", max_len=80),
            )
            folder = self.root / slug
            if folder.is_symlink():
                self._check_link(slug)
                continue
            if not folder.is_dir():
                c.add(
                    (*path, "slug"),
                    f"unit {slug!r} is listed but the folder {slug}/ does not exist",
                    f"create the folder {slug}/ next to course.yaml, or fix the slug to match an existing folder",
                )
                continue
            course.units.append(unit)
        return course

    def _unlisted_folders(self, course: CourseSpec) -> None:
        listed = {unit.slug for unit in course.units} | self.listed
        for name, kind in self.entries(""):
            if kind != "dir" or name in listed:
                continue
            if self._holds_course_content(name):
                self.problem(
                    name + "/",
                    None,
                    f"folder {name}/ holds lessons or labs but is not listed in course.yaml units",
                    f"add `- slug: {name}` with a title under `units:` in course.yaml, or move its files into a listed unit",
                )

    def _holds_course_content(self, rel: str) -> bool:
        for dirpath, dirnames, filenames in os.walk(self.root / rel):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            if any(f.endswith(".md") or f == "lab.yaml" for f in filenames):
                return True
            if dirpath.count(os.sep) - str(self.root).count(os.sep) > 3:
                break
        return False

    # --- units, lessons, labs ----------------------------------------------------------------------------

    def _unit(self, course: CourseSpec, unit: UnitSpec) -> None:
        seen_lessons: dict[str, str] = {}
        for name, kind in self.entries(unit.slug):
            rel = f"{unit.slug}/{name}"
            if kind == "file" and name.endswith(".md"):
                lesson = self._lesson(course, unit, rel, name, len(unit.lessons) + 1)
                if lesson is None:
                    self.unreadable.add(rel)
                    continue
                if lesson.slug in seen_lessons:
                    self.unreadable.add(rel)
                    self.problem(
                        rel,
                        1,
                        f"lesson slug {lesson.slug!r} is also used by {seen_lessons[lesson.slug]}",
                        "rename one of the files or set a different `slug:` in its front matter",
                    )
                    continue
                seen_lessons[lesson.slug] = rel
                unit.lessons.append(lesson)
            elif kind == "dir":
                if (self.root / rel / "lab.yaml").exists() or (self.root / rel / "lab.yaml").is_symlink():
                    lab = self._lab(course, unit, rel, name)
                    if lab is not None:
                        unit.labs.append(lab)
                elif self._holds_course_content(rel):
                    self.problem(
                        rel + "/",
                        None,
                        f"folder {rel}/ holds Markdown files but no lab.yaml; lessons are not read from sub-folders",
                        f"move the lessons directly into {unit.slug}/, or add a lab.yaml if this folder is a lab",
                    )

    def _lesson(self, course: CourseSpec, unit: UnitSpec, rel: str, name: str, position: int) -> LessonSpec | None:
        text = self.read_text(rel)
        if text is None:
            return None
        front, body, offset = self._split_front_matter(rel, text)
        if front is None:
            return None
        doc = parse_yaml(front, file=rel, problems=self.problems, line_offset=1, what="front matter")
        if doc is None:
            return None
        c = Checker(file=rel, doc=doc, problems=self.problems)
        fm = c.mapping(doc.data if doc.data is not None else {}, (), "the front matter")
        if fm is None:
            return None
        c.unknown_keys(fm, (), LESSON_FIELDS, "lesson front matter")
        default_slug = _NUMBER_PREFIX.sub("", name[: -len(".md")])
        slug = c.slug(fm, (), "slug", what="the front matter") or default_slug
        if "slug" not in fm and not SLUG_RE.match(slug):
            c.add(
                (),
                f"the lesson slug {slug!r} taken from the file name is not a valid slug",
                "rename the file to NN-lower-case-words.md or set `slug:` in the front matter",
            )
        lesson = LessonSpec(
            slug=slug,
            title=c.text(fm, (), "title", what="the front matter", required=True, max_len=200),
            file=rel,
            position=position,
            unit_slug=unit.slug,
            tagline=c.text(fm, (), "tagline", what="the front matter", max_len=300),
            reflection=c.text(fm, (), "reflection", what="the front matter", max_len=1000),
            outcomes=c.str_list(fm, (), "outcomes", what="the front matter"),
            prerequisites=c.str_list(fm, (), "prerequisites", what="the front matter"),
            estimated_minutes=c.integer(
                fm, (), "estimated_minutes", what="the front matter", minimum=1, maximum=24 * 60
            ),
            body=body,
            body_offset=offset,
        )
        lesson.objective, lesson.objective_detail = self._with_detail(c, fm, "objective")
        lesson.deliverable, lesson.deliverable_detail = self._with_detail(c, fm, "deliverable")
        lesson.references, description_lines = self._references(c, fm)
        self.header_lines[rel] = {
            **{key: doc.line((key,)) for key in ("tagline", "reflection")},
            **{key: doc.line((key, "text")) for key in ("objective", "deliverable")},
            **{f"{key}_detail": doc.line((key, "detail")) for key in ("objective", "deliverable")},
            **{
                key: [doc.line((key, i)) for i in range(len(getattr(lesson, key)))]
                for key in ("outcomes", "prerequisites")
            },
            "reference_descriptions": description_lines,
        }
        lesson.render_key = render_key(course=course.slug, file=rel, offset=offset, body=body)
        self._misspelt_blocks(rel, body, offset)
        return lesson

    def _with_detail(self, c: Checker, fm: dict, key: str) -> tuple[str, str]:
        """`objective: text`, or `objective: {text: …, detail: …}` where detail is a second, smaller line."""
        value = fm.get(key)
        if not isinstance(value, dict):
            if isinstance(value, bool | list):
                got = "a list" if isinstance(value, list) else "true/false"
                c.add(
                    (key,),
                    f"{key!r} must be text or a mapping with `text:` and `detail:`, got {got}",
                    f"write `{key}: …` on one line, or `{key}:` then indented `text: …` and `detail: …` lines",
                )
                return "", ""
            return c.text(fm, (), key, what="the front matter"), ""
        what = f"the {key}"
        c.unknown_keys(value, (key,), SECOND_LINE_FIELDS, what)
        return (
            c.text(value, (key,), "text", what=what, required=True),
            c.text(value, (key,), "detail", what=what, max_len=500),
        )

    def _misspelt_blocks(self, rel: str, body: str, offset: int) -> None:
        """Fence mistakes that would render silently: a name that is neither a block nor a language (```quizz
        becomes a code block), and list items a block's YAML body folds into the item above."""
        fence = ""
        block_start = -1
        lines = body.split("\n")
        for index, line in enumerate(lines):
            match = _FENCE.match(line)
            if not match:
                continue
            if fence:
                if match.group(1).startswith(fence) and not match.group(2).strip():
                    if block_start >= 0:
                        text = "\n".join(lines[block_start + 1 : index])
                        self.problems += yaml_merged_list_items(text, file=rel, line_offset=offset + block_start + 1)
                    fence, block_start = "", -1
                continue
            fence = match.group(1)
            word = match.group(2).split()[0].lower() if match.group(2).strip() else ""
            if word in BLOCK_NAMES:
                block_start = index
            if not word or word in BLOCK_NAMES or is_known_language(word):
                continue
            message, hint = _fence_name_problem(word)
            self.problem(rel, offset + index + 1, message, hint)

    def _split_front_matter(self, rel: str, text: str) -> tuple[str | None, str, int]:
        lines = text.split("\n")
        if not lines or lines[0].strip() != "---":
            self.problem(
                rel,
                1,
                "lesson has no front matter",
                "start the file with a `---` line, then `title: …`, then another `---` line",
            )
            return None, "", 0
        for index in range(1, len(lines)):
            if lines[index].strip() in ("---", "..."):
                return "\n".join(lines[1:index]), "\n".join(lines[index + 1 :]), index + 1
        self.problem(rel, 1, "front matter is not closed", "add a `---` line after the last front matter field")
        return None, "", 0

    def _references(self, c: Checker, fm: dict) -> tuple[list[dict[str, str]], list[int]]:
        """The references, and the file line of each one's description."""
        raw = fm.get("references")
        if raw is None:
            return [], []
        if not isinstance(raw, list):
            c.add(("references",), "references must be a list", "write one `- kind: … title: … url: …` per reference")
            return [], []
        out = []
        lines = []
        for index, item in enumerate(raw):
            path = ("references", index)
            ref = c.mapping(item, path, f"reference {index + 1}")
            if ref is None:
                continue
            c.unknown_keys(ref, path, REFERENCE_FIELDS, "a reference")
            what = f"reference {index + 1}"
            kind = c.choice(ref, path, "kind", REFERENCE_KINDS, what=what, required=True)
            url = c.text(ref, path, "url", what=what, required=True, max_len=2000)
            if url and not re.match(r"^https?://[^\s/]+", url):
                c.add(
                    (*path, "url"),
                    f"reference url {url!r} is not an http(s) address",
                    "write the full https://… address",
                )
            title = c.text(ref, path, "title", what=what, max_len=300) or url
            description = c.text(ref, path, "description", what=what, max_len=500)
            out.append({"kind": kind, "title": title, "url": url, "description": description})
            lines.append(c.doc.line((*path, "description")))
        return out, lines

    def _lab(self, course: CourseSpec, unit: UnitSpec, rel: str, name: str) -> LabEntry | None:
        yaml_rel = f"{rel}/lab.yaml"
        text = self.read_text(yaml_rel)
        if text is None:
            return None
        labs = course_labs()
        if labs is None:
            self.problem(yaml_rel, None, "this site cannot grade labs (the labs app is not installed)", _NO_LABS_HINT)
            return None
        spec = labs.lab_parse(text, file=yaml_rel, folder_slug=name, problems=self.problems)
        if spec is None:
            return None
        if spec.unit and spec.unit != unit.slug:
            self.problem(
                yaml_rel,
                1,
                f"lab.yaml says unit {spec.unit!r} but the lab's folder is in {unit.slug}/",
                f"move the lab folder into {spec.unit}/ or set `unit: {unit.slug}`",
            )
        spec.unit = unit.slug
        lab = LabEntry(slug=spec.slug, folder=rel, unit_slug=unit.slug, spec=spec)
        instructions_rel = f"{rel}/{spec.instructions}"
        body = self.read_text(
            instructions_rel,
            required_hint=f"write the lab's instructions in {instructions_rel} or point `instructions:` at the file",
        )
        if body is not None:
            lab.instructions_file = instructions_rel
            lab.instructions_body = body
            self._misspelt_blocks(instructions_rel, body, 0)
            lab.render_key = render_key(course=course.slug, file=instructions_rel, offset=0, body=body)
        lab.starter = self._tree(f"{rel}/starter")
        lab.grader = self._tree(f"{rel}/grader")
        for folder, line in spec.example_folders():
            tree = self._tree(f"{rel}/{folder}")
            if tree is None or not tree.files:
                self.problem(
                    yaml_rel,
                    line,
                    f"example folder {rel}/{folder}/ is missing or empty",
                    f"create {rel}/{folder}/ holding a submission, or remove the example from lab.yaml",
                )
                continue
            lab.examples[folder] = tree
        labs.lab_check(lab=lab, problems=self.problems)
        return lab

    def _tree(self, rel: str) -> TreeDigest | None:
        top = self.root / rel
        if top.is_symlink():
            self._check_link(rel)
            return None
        if not top.is_dir():
            return None
        files: list[tuple[str, int, str, bool]] = []
        total = 0
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            here = Path(dirpath)
            for name in sorted(filenames) + [d for d in dirnames if (here / d).is_symlink()]:
                path = here / name
                file_rel = path.relative_to(self.root).as_posix()
                st = path.lstat()
                if stat.S_ISLNK(st.st_mode):
                    self.problem(
                        file_rel,
                        None,
                        "symbolic links are not allowed in starter/ or grader/",
                        "replace the link with a copy",
                    )
                    continue
                if not stat.S_ISREG(st.st_mode):
                    self.problem(file_rel, None, "is not a regular file", "remove it")
                    continue
                if st.st_size > MAX_BUNDLE_FILE_BYTES:
                    self.problem(
                        file_rel,
                        None,
                        f"file is {st.st_size} bytes, above the {MAX_BUNDLE_FILE_BYTES} byte limit",
                        "shrink it or generate it in the grader at run time",
                    )
                    continue
                total += st.st_size
                files.append(
                    (path.relative_to(top).as_posix(), st.st_size, file_sha256(path), bool(st.st_mode & 0o111))
                )
            dirnames[:] = [d for d in dirnames if not (here / d).is_symlink()]
        if len(files) > MAX_BUNDLE_FILES or total > MAX_BUNDLE_BYTES:
            self.problem(
                rel + "/",
                None,
                f"folder holds {len(files)} files and {total} bytes, above the limits of {MAX_BUNDLE_FILES} files "
                f"and {MAX_BUNDLE_BYTES} bytes",
                "remove generated or large files from the folder",
            )
        return TreeDigest(root=top, digest=tree_digest(files), files=files)

    def _duplicate_labs(self, course: CourseSpec) -> None:
        seen: dict[str, str] = {}
        for lab in course.labs():
            if lab.slug in seen:
                self.problem(
                    f"{lab.folder}/lab.yaml",
                    1,
                    f"lab slug {lab.slug!r} is also used by {seen[lab.slug]}/",
                    "lab slugs are unique across the course: rename the folder or set a different `slug:`",
                )
            else:
                seen[lab.slug] = lab.folder

    # --- rendering and links -----------------------------------------------------------------------------

    def _resolver(self, course: CourseSpec, from_file: str) -> Callable[[str], str | None]:
        by_file = self._lesson_urls(course)
        folder = posixpath.dirname(from_file)

        def resolve(target: str) -> str | None:
            joined = posixpath.normpath(posixpath.join(folder, target))
            return by_file.get(joined)

        return resolve

    def _lesson_urls(self, course: CourseSpec) -> dict[str, str]:
        if not hasattr(self, "_urls"):
            self._urls = {
                lesson.file: lesson_url(course.slug, lesson.unit_slug, lesson.slug) for lesson in course.lessons()
            }
        return self._urls

    def _render_all(self, course: CourseSpec) -> None:
        docs: list[tuple[Any, str, str, int]] = [
            (lesson, lesson.file, lesson.body, lesson.body_offset) for lesson in course.lessons()
        ]
        docs += [
            (lab, lab.instructions_file, lab.instructions_body, lab.instructions_offset)
            for lab in course.labs()
            if lab.instructions_file
        ]
        cached = self.cache.lookup([item.render_key for item, *_ in docs]) if self.cache else {}
        for item, file, body, offset in docs:
            resolve = self._resolver(course, file)
            hit = cached.get(item.render_key)
            if hit is not None and self._still_valid(course, file, hit, resolve):
                hit.fresh = False
                item.rendered = hit
                continue
            resolved: dict[str, str | None] = {}

            def recording(target: str, resolve: Callable[[str], str | None] = resolve, seen: dict = resolved) -> Any:
                seen[target] = url = resolve(target)
                return url

            def recording_asset(
                target: str, *, image: bool = False, line: int | None = None, file: str = file, seen: dict = resolved
            ) -> str | None:
                # Recorded so that a cache hit checks (and registers) the same assets again.
                url = self._asset_reported(course, file, target, image=image, line=line)
                seen[f"{'image' if image else 'asset'}:{target}"] = url
                return url

            result = render_markdown(body, link_resolver=recording, asset_resolver=recording_asset, line_offset=offset)
            self._render_problems(file, result.problems)
            item.rendered = Rendered(
                html=result.html,
                toc=result.toc,
                quizzes=result.quizzes,
                links=[tuple(link) for link in result.links],
                resolved=resolved,
                code_cells=result.code_cells,
            )

    def _render_problems(self, file: str, problems: Iterable[Any]) -> None:
        """Report the renderer's problems; a link to a lesson that has problems of its own says so instead of
        calling the link broken (the file is there: the fix is in the target, not in the link)."""
        for p in problems:
            message, hint = p.message, p.hint
            if message.startswith(_BROKEN_LINK):
                href = message[len(_BROKEN_LINK) :]
                target = posixpath.normpath(posixpath.join(posixpath.dirname(file), href.partition("#")[0]))
                if target in self.unreadable:
                    message = f"the link {href} names {target}, which cannot be read because of its own problems"
                    hint = f"fix the problems reported for {target}; this link needs no change"
            self.problem(file, p.line, message, hint)

    def _render_headers(self, course: CourseSpec) -> None:
        """Render each lesson's front-matter text as inline Markdown (code, emphasis, links, assets, math), with
        the body's link and asset rules, problems at the field's line."""
        for lesson in course.lessons():
            lines = self.header_lines.get(lesson.file, {})
            header: dict[str, Any] = {
                key: self._inline(course, lesson.file, getattr(lesson, key), lines.get(key, 1))
                for key in HEADER_TEXT_FIELDS
            }
            descriptions = [reference["description"] for reference in lesson.references]
            for key, texts in (
                ("outcomes", lesson.outcomes),
                ("prerequisites", lesson.prerequisites),
                ("reference_descriptions", descriptions),
            ):
                at = lines.get(key, [])
                header[key] = [
                    self._inline(course, lesson.file, text, at[i] if i < len(at) else 1) for i, text in enumerate(texts)
                ]
            lesson.header_html = header

    def _inline(self, course: CourseSpec, file: str, text: str, line: int) -> str:
        if not text:
            return ""

        def asset(path: str, *, image: bool = False, line: int | None = None) -> str | None:
            return self._asset_reported(course, file, path, image=image, line=line)

        result = render_inline_markdown(
            text, line=line, link_resolver=self._resolver(course, file), asset_resolver=asset
        )
        self._render_problems(file, result.problems)
        self.header_links.setdefault(file, []).extend(result.links)
        return result.html

    def _still_valid(self, course: CourseSpec, file: str, hit: Rendered, resolve: Callable[[str], str | None]) -> bool:
        """Whether a cached render still holds: its lesson links and its assets resolve as they did."""
        for key, url in hit.resolved.items():
            kind, _, path = key.partition(":")
            if kind in ("asset", "image") and path:
                found = self._asset_from(course, file, path, image=kind == "image")
                if url is None or not isinstance(found, AssetSpec) or found.url != url:
                    return False
            elif resolve(key) != url:
                return False
        return True

    # --- course assets -----------------------------------------------------------------------------------

    def _asset_reported(self, course: CourseSpec, file: str, path: str, *, image: bool, line: int | None) -> str | None:
        """The URL of the asset `path` (relative to `file`), or None after reporting why it cannot be used."""
        found = self._asset_from(course, file, path, image=image)
        if isinstance(found, AssetProblem):
            self.problem(file, line, found.message, found.hint)
            return None
        return found.url

    def _asset_from(self, course: CourseSpec, file: str, path: str, *, image: bool) -> AssetSpec | AssetProblem:
        if path.startswith("/") or "\\" in path:
            return AssetProblem(
                f"the asset path {path!r} is not relative to this file",
                "write the path relative to this Markdown file's folder with '/' separators, e.g. figures/flow.svg",
            )
        rel = posixpath.normpath(posixpath.join(posixpath.dirname(file), path))
        found = self._asset(course, rel)
        if isinstance(found, AssetSpec) and image and found.kind != "image":
            return AssetProblem(
                f"{rel} is a data file, not an image, so it cannot be shown with ![…](…)",
                f"link to it instead: [download the data]({path})",
            )
        return found

    def _asset(self, course: CourseSpec, rel: str) -> AssetSpec | AssetProblem:
        """Check, hash and register the asset at the course-relative `rel`, once per load."""
        if rel in self.asset_results:
            return self.asset_results[rel]
        found = self._asset_check(course, rel)
        if isinstance(found, AssetSpec):
            if self.asset_bytes + found.size > MAX_COURSE_ASSET_BYTES:
                found = AssetProblem(
                    f"{rel} would bring the course's assets to {self.asset_bytes + found.size} bytes, above the "
                    f"{MAX_COURSE_ASSET_BYTES} byte limit per course",
                    "shrink the course's images and data files, or link to large data hosted elsewhere",
                )
            else:
                self.asset_bytes += found.size
                course.assets[rel] = found
        self.asset_results[rel] = found
        return found

    def _asset_check(self, course: CourseSpec, rel: str) -> AssetSpec | AssetProblem:
        if rel == ".." or rel.startswith("../"):
            return AssetProblem(
                f"the asset path leads outside the course directory (to {rel!r})",
                "keep the file inside the course folder and refer to it by a path relative to this Markdown file",
            )
        hidden = AssetProblem(
            f"{rel} is in a lab's grader/ or example folder, which learners must never see",
            "copy the file to a folder that is not hidden (e.g. figures/ next to the lesson) and refer to the copy",
        )
        if self._hidden(course, rel):
            return hidden
        path = self.root / rel
        target = path.resolve()
        if not self._inside(target):
            return AssetProblem(
                f"{rel} is a symbolic link leading outside the course directory",
                "replace the link with a copy of the file",
            )
        if target != path and self._hidden(course, target.relative_to(self.root).as_posix()):
            return hidden
        if target.is_dir():
            return AssetProblem(f"{rel} is a folder, not a file", "refer to a file inside the folder")
        problem = name_problem(rel)
        if problem is not None:
            return problem
        if not target.exists():
            return AssetProblem(f"the file {rel} does not exist", self._missing_asset_hint(rel))
        st = target.stat()
        if not stat.S_ISREG(st.st_mode):
            return AssetProblem(f"{rel} is not a regular file", "replace it with a plain file")
        if st.st_size > MAX_ASSET_BYTES:
            return AssetProblem(
                f"{rel} is {st.st_size} bytes, above the {MAX_ASSET_BYTES} byte limit for one course asset",
                "shrink or compress it (a smaller PNG, a WebP, a sample of the data)",
            )
        data = target.read_bytes()
        problem = content_problem(rel, data)
        if problem is not None:
            return problem
        return AssetSpec(
            path=rel,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            media_type=media_type(rel),
            kind=asset_kind(rel),
            source=target,
        )

    def _missing_asset_hint(self, rel: str) -> str:
        """Name the file in the same folder whose name is closest, as a misspelt fence name gets its match."""
        folder, _, name = rel.rpartition("/")
        hint = "check the spelling; asset paths are relative to the folder of the Markdown file that uses them"
        path = self.root / folder
        if not path.is_dir() or not self._inside(path.resolve()):
            return hint
        # Names only: nothing is opened or followed, so a bad entry here is left to whoever uses it.
        with os.scandir(path) as it:
            names = [entry.name for entry in it if not entry.name.startswith(".") and not entry.is_dir()]
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        if not close:
            return hint
        where = f"{folder}/" if folder else "the course folder"
        return f"did you mean {close[0]!r}? It is in {where}; {hint}"

    def _hidden(self, course: CourseSpec, rel: str) -> bool:
        """Inside a lab's grader/ or one of its example folders.

        Compared without case: on a case-insensitive file system (macOS, Windows) lab/Grader/answer.png is the
        file lab/grader/answer.png, and the author's checkout is where the course is imported from.
        """
        folders = []
        for lab in course.labs():
            folders.append(f"{lab.folder}/grader")
            folders += [posixpath.normpath(f"{lab.folder}/{folder}") for folder, _ in lab.spec.example_folders()]
        folded = rel.casefold()
        if any(folded.startswith(folder.casefold() + "/") for folder in folders):
            return True
        # A lab whose lab.yaml has problems is not in course.labs(); its grader/ stays private all the same.
        parts = rel.split("/")
        return any(
            part.casefold() == "grader" and (self.root.joinpath(*parts[:index]) / "lab.yaml").exists()
            for index, part in enumerate(parts[:-1])
        )

    def _anchors(self, course: CourseSpec) -> dict[str, set[str]]:
        if not hasattr(self, "_anchor_sets"):
            self._anchor_sets = {
                lesson.file: {entry["id"] for entry in lesson.toc} | set(_HEADING_ID.findall(lesson.html))
                for lesson in course.lessons()
                if lesson.rendered
            }
        return self._anchor_sets

    def _check_anchors(self, course: CourseSpec) -> None:
        anchors = self._anchors(course)
        items = [(lesson.file, lesson.rendered.links if lesson.rendered else []) for lesson in course.lessons()]
        items += [(file, links) for file, links in self.header_links.items()]
        items += [(lab.instructions_file, lab.rendered.links) for lab in course.labs() if lab.rendered]
        for file, links in items:
            for href, line in links:
                path, _, fragment = href.partition("#")
                if not fragment:
                    continue
                target = posixpath.normpath(posixpath.join(posixpath.dirname(file), path))
                if target in anchors and fragment not in anchors[target]:
                    known = ", ".join(sorted(anchors[target])[:12]) or "none"
                    self.problem(
                        file,
                        line,
                        f"broken internal link: {href} — {target} has no section with the id {fragment!r}",
                        f"link to one of its section ids ({known}) or add that heading to {target}",
                    )

    def _check_lab_links(self, course: CourseSpec) -> None:
        lessons = {(lesson.unit_slug, lesson.slug): lesson for lesson in course.lessons()}
        anchors = self._anchors(course)
        for lab in course.labs():
            for check in lab.spec.checks:
                if not check.lesson:
                    continue
                where, _, fragment = check.lesson.partition("#")
                unit_slug, _, lesson_slug = where.strip("/").partition("/")
                lesson = lessons.get((unit_slug, lesson_slug))
                hint = "write `lesson: <unit-slug>/<lesson-slug>#<section-id>` naming a lesson of this course"
                if lesson is None:
                    self.problem(
                        f"{lab.folder}/lab.yaml",
                        check.lesson_line,
                        f"check {check.id!r} links to lesson {where!r}, which is not in the course",
                        hint,
                    )
                    continue
                if fragment and fragment not in anchors.get(lesson.file, set()):
                    known = ", ".join(sorted(anchors.get(lesson.file, set()))[:12]) or "none"
                    self.problem(
                        f"{lab.folder}/lab.yaml",
                        check.lesson_line,
                        f"check {check.id!r} links to section {fragment!r}, which {lesson.file} does not have",
                        f"use one of its section ids: {known}",
                    )
                    continue
                url = lesson_url(course.slug, unit_slug, lesson_slug)
                check.lesson_url = f"{url}#{fragment}" if fragment else url

    # --- hashes -------------------------------------------------------------------------------------------

    def _hash_rows(self, course: CourseSpec) -> None:
        for lesson in course.lessons():
            lesson.content_hash = _json_sha256(
                {
                    "title": lesson.title,
                    "tagline": lesson.tagline,
                    "objective": lesson.objective,
                    "objective_detail": lesson.objective_detail,
                    "deliverable": lesson.deliverable,
                    "deliverable_detail": lesson.deliverable_detail,
                    "reflection": lesson.reflection,
                    "outcomes": lesson.outcomes,
                    "prerequisites": lesson.prerequisites,
                    "estimated_minutes": lesson.estimated_minutes,
                    "references": lesson.references,
                    "header_html": lesson.header_html,
                    "source_path": lesson.file,
                    "html": lesson.html,
                    "toc": lesson.toc,
                    "quizzes": lesson.quizzes,
                    # Only when there are cells: lessons without any keep the hash (and row) they had before.
                    **({"code_cells": lesson.code_cells} if lesson.code_cells else {}),
                }
            )
        for lab in course.labs():
            lab.content_hash = _json_sha256(
                {
                    "spec": lab.spec.to_json(),
                    "html": lab.rendered.html if lab.rendered else "",
                    "toc": lab.rendered.toc if lab.rendered else [],
                    "grader": lab.grader_digest,
                    "starter": lab.starter.digest if lab.starter else "",
                    "folder": lab.folder,
                }
            )
        material = sorted(self.file_digests.items())
        material += sorted((f"asset:{path}", asset.sha256) for path, asset in course.assets.items())
        material += [
            (lab.folder, f"{lab.grader_digest}:{lab.starter.digest if lab.starter else ''}") for lab in course.labs()
        ]
        course.content_digest = _json_sha256(material)


# Fence names that are not code and that this site does not draw: said plainly rather than "unknown".
_NOT_DRAWN = {
    "mermaid": (
        "```mermaid diagrams are not drawn on this site: the block would show as its source text",
        "show the steps with a ```stages block, or draw the diagram as an SVG figure (![alt](figures/flow.svg))",
    ),
    "math": (
        "```math blocks are not typeset on this site: the block would show as its TeX source",
        "write display math between $$ lines instead: a line `$$`, the TeX, then a line `$$`",
    ),
}


def _fence_name_problem(word: str) -> tuple[str, str]:
    """Message and hint for a fence whose name is neither a block nor a known language, with its closest match."""
    if word in _NOT_DRAWN:
        return _NOT_DRAWN[word]
    close = difflib.get_close_matches(word, [*BLOCK_NAMES, *_COMMON_LANGUAGES, *sorted(PLAIN_TEXT)], n=1, cutoff=0.7)
    # The likely intents first (```pyhton → python), then every name the highlighter knows (```dockerfil).
    close = close or difflib.get_close_matches(word, _all_language_names(), n=1, cutoff=0.8)
    guess = f"did you mean ```{close[0]}? " if close else ""
    if close and close[0] in BLOCK_NAMES:
        message = f"unknown block type {word!r}"
    else:
        message = f"unknown fence name {word!r}: it is neither a block nor a language the highlighter knows"
    hint = (
        f"{guess}Blocks are {', '.join(BLOCK_NAMES)}; for code, name its language (```python); "
        "write ```text for plain text"
    )
    return message, hint


@functools.lru_cache(maxsize=1)
def _all_language_names() -> tuple[str, ...]:
    return tuple(sorted({alias for _name, aliases, _files, _types in get_all_lexers() for alias in aliases}))


def tree_digest(files: Iterable[tuple[str, int, str, bool]]) -> str:
    """sha256 naming a folder's content: each file's path, executable bit and sha256, in path order."""
    lines = [f"{path}\0{'x' if executable else '-'}\0{sha}\n" for path, _size, sha, executable in sorted(files)]
    return hashlib.sha256("".join(lines).encode()).hexdigest() if lines else EMPTY_TREE_DIGEST


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read a MiB at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _json_sha256(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
