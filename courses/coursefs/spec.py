"""Plain dataclasses describing a course directory once read and validated. No database, no Django models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from courses.errors import CourseProblem

REFERENCE_KINDS = ("official-doc", "article", "paper", "book", "video", "tool", "notebook", "repository")


def lesson_url(course: str, unit: str, lesson: str) -> str:
    """The lesson page URL (see "URLs" in docs/architecture.md)."""
    return f"/courses/{course}/{unit}/{lesson}/"


def asset_url(sha256: str, filename: str) -> str:
    """A course asset's URL: named by its digest, so it never changes meaning and can be cached for ever."""
    return f"/course-assets/{sha256}/{filename}"


@dataclass(frozen=True)
class AssetSpec:
    """A file the course ships, referenced from a lesson or lab instructions (an image or a data file)."""

    path: str  # relative to the course directory
    sha256: str
    size: int
    media_type: str
    kind: str  # "image" (may be shown with ![alt](path)) or "data" (linked only)
    source: Path  # the file on disk, read by the importer and the preview server

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def url(self) -> str:
        return asset_url(self.sha256, self.filename)


@dataclass
class Rendered:
    """What rendering a Markdown document produced (freshly or from the cache)."""

    html: str
    toc: list[dict[str, Any]]
    quizzes: list[dict[str, Any]]
    links: list[tuple[str, int]]  # (href as written, file line)
    resolved: dict[str, str | None]  # relative .md path -> URL it resolved to when rendered
    fresh: bool = True  # False when it came from the render cache
    code_cells: list[dict[str, Any]] = field(default_factory=list)  # runnable cells (courses.markdown.cells)


@dataclass
class LessonSpec:
    slug: str
    title: str
    file: str  # relative to the course directory
    position: int  # 1-based within the unit
    unit_slug: str
    tagline: str = ""
    objective: str = ""
    objective_detail: str = ""  # the objective's second line
    deliverable: str = ""
    deliverable_detail: str = ""
    reflection: str = ""
    outcomes: list[str] = field(default_factory=list)
    prerequisites: list[str] = field(default_factory=list)
    estimated_minutes: int | None = None
    references: list[dict[str, str]] = field(default_factory=list)  # {kind, title, url, description}
    # The text fields above rendered as sanitised inline Markdown, for the page (the plain ones stay for titles
    # and the admin): tagline, objective, objective_detail, deliverable, deliverable_detail, reflection -> str;
    # outcomes, prerequisites, reference_descriptions -> list[str] (one per item, in order).
    header_html: dict[str, Any] = field(default_factory=dict)
    body: str = ""
    body_offset: int = 0  # file lines before the body
    render_key: str = ""  # sha256 of renderer version + where the body sits + body
    rendered: Rendered | None = None
    content_hash: str = ""  # sha256 of everything stored on the Lesson row and its quizzes

    @property
    def html(self) -> str:
        return self.rendered.html if self.rendered else ""

    def references_with_html(self) -> list[dict[str, str]]:
        """The references, each with its description rendered (`description_html`), for pages that group them."""
        rendered = self.header_html.get("reference_descriptions", [])
        return [
            {**reference, "description_html": rendered[index] if index < len(rendered) else ""}
            for index, reference in enumerate(self.references)
        ]

    @property
    def toc(self) -> list[dict[str, Any]]:
        return self.rendered.toc if self.rendered else []

    @property
    def quizzes(self) -> list[dict[str, Any]]:
        return self.rendered.quizzes if self.rendered else []

    @property
    def code_cells(self) -> list[dict[str, Any]]:
        return self.rendered.code_cells if self.rendered else []


@dataclass
class TreeDigest:
    """A folder (starter/ or grader/) hashed file by file; `digest` names its content."""

    root: Path
    digest: str
    files: list[tuple[str, int, str, bool]] = field(default_factory=list)  # (path, size, sha256, executable)

    @property
    def total_bytes(self) -> int:
        return sum(f[1] for f in self.files)


class LabCheckRef(Protocol):
    """The parts of one check of a lab that the course loader checks (its link into a lesson)."""

    id: str
    kind: str
    line: int | None
    lesson: str  # "<unit>/<lesson>#<anchor>", or ""
    lesson_line: int | None
    lesson_url: str  # set by the loader once `lesson` resolves


class LabDefinition(Protocol):
    """A lab.yaml after validation: what the course loader reads of it."""

    slug: str
    unit: str
    title: str
    instructions: str
    checks: Sequence[LabCheckRef]

    def to_json(self) -> dict[str, Any]: ...

    def example_folders(self) -> list[tuple[str, int | None]]:
        """Folders of the lab to read as trees (its examples), each with its line in lab.yaml."""


@dataclass
class LabEntry:
    slug: str
    folder: str  # relative to the course directory
    unit_slug: str
    spec: LabDefinition
    instructions_file: str = ""
    instructions_body: str = ""
    instructions_offset: int = 0
    render_key: str = ""
    rendered: Rendered | None = None
    starter: TreeDigest | None = None
    grader: TreeDigest | None = None
    examples: dict[str, TreeDigest] = field(default_factory=dict)  # folder -> tree, never shown to learners
    content_hash: str = ""

    @property
    def grader_digest(self) -> str:
        return self.grader.digest if self.grader else EMPTY_TREE_DIGEST


EMPTY_TREE_DIGEST = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # sha256 of nothing


@dataclass
class UnitSpec:
    slug: str
    title: str
    position: int
    number: int = 0  # as shown: "Week 5"; course.yaml's `number`, else the position
    summary: str = ""
    label: str = ""  # what this unit is called, when not the course's unit_label ("Module", "Essay")
    track: str = ""  # an optional line before the label ("Advanced mastery")
    lessons: list[LessonSpec] = field(default_factory=list)
    labs: list[LabEntry] = field(default_factory=list)


@dataclass
class CourseSpec:
    slug: str
    title: str
    root: Path
    summary: str = ""
    unit_label: str = "Unit"
    units: list[UnitSpec] = field(default_factory=list)
    assets: dict[str, AssetSpec] = field(default_factory=dict)  # by path relative to the course directory
    content_digest: str = ""  # sha256 over every file read, for the content version outside git

    def lessons(self) -> list[LessonSpec]:
        return [lesson for unit in self.units for lesson in unit.lessons]

    def labs(self) -> list[LabEntry]:
        return [lab for unit in self.units for lab in unit.labs]


@dataclass
class LoadResult:
    course: CourseSpec | None
    problems: list[CourseProblem]

    @property
    def ok(self) -> bool:
        return self.course is not None and not self.problems
