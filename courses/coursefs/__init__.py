"""Course-as-code: read and validate a course directory into plain dataclasses. No database access.

`load_course(path)` returns a `LoadResult(course, problems)`; each problem names a file, a line and a fix hint.
"""

from courses.coursefs.loader import RenderCache, file_sha256, load_course, render_key, tree_digest
from courses.coursefs.spec import (
    AssetSpec,
    CourseSpec,
    LabEntry,
    LessonSpec,
    LoadResult,
    Rendered,
    TreeDigest,
    UnitSpec,
    asset_url,
    lesson_url,
)
from courses.errors import CourseProblem

__all__ = [
    "AssetSpec",
    "CourseProblem",
    "CourseSpec",
    "LabEntry",
    "LessonSpec",
    "LoadResult",
    "RenderCache",
    "Rendered",
    "TreeDigest",
    "UnitSpec",
    "asset_url",
    "file_sha256",
    "lesson_url",
    "load_course",
    "render_key",
    "tree_digest",
]
