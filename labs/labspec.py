"""lab.yaml: parsing and validation into a `LabSpec` with every default filled in.

`LabSpec` is the one source of a lab's rules: parsed and validated once (at import), stored as JSON in
`Lab.spec`, and loaded back as the typed object (`Lab.labspec`, via the tolerant `LabSpec.from_json`). The
sandbox limits, upload rules, revision policy and each check's points all come from it; every default is
written once, as a dataclass field default below. Platform maxima (settings.GRADING_MAX_*) are enforced at
import and again at run time (`LimitsSpec.sandbox_limits`), so a site that lowers a maximum after an import
never runs a sandbox larger than it allows.

Problems are `CourseProblem`s so `validate_course` reports labs exactly like lessons. Things that need the rest
of the course (a check's `lesson:` link, whether `grader/` exists) are checked by `courses.coursefs`, using the
line numbers kept here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import shlex
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from core.yamlsrc import SLUG_RE, Checker, CourseProblem, parse_yaml
from labs.checks.base import CATEGORIES, check_kind, check_kinds, validate_check_spec
from labs.globs import glob_match, glob_problem, is_glob
from labs.reviews.rubric import parse_review
from labs.sandbox.limits import SandboxLimits

VISIBILITIES = ("visible", "hidden")
LATE_POLICIES = ("accept", "reject")

MiB = 1024 * 1024


def platform_maxima() -> dict[str, float]:
    """The largest values a lab may ask for (settings, from SHIPSHAPE_GRADING_MAX_*); the wall time also sizes the
    broker's visibility timeout."""
    return {
        "cpus": float(settings.GRADING_MAX_CPUS),
        "memory_mb": int(settings.GRADING_MAX_MEMORY_MB),
        "wall_seconds": int(settings.GRADING_MAX_WALL_SECONDS),
        "pids": int(settings.GRADING_MAX_PIDS),
        "output_bytes": int(settings.GRADING_MAX_OUTPUT_BYTES),
        "scratch_mb": int(settings.GRADING_MAX_SCRATCH_MB),
        "max_file_bytes": 50 * MiB,
        "max_total_bytes": 200 * MiB,
        "max_files": 10_000,
    }


@dataclass
class FilesSpec:
    required: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=lambda: ["**"])
    max_file_bytes: int = 1 * MiB
    max_total_bytes: int = 5 * MiB
    max_files: int = 100


@dataclass
class LimitsSpec:
    cpus: float = 1.0
    memory_mb: int = 256
    wall_seconds: int = 120  # the whole grading run
    pids: int = 128
    output_bytes: int = 1 * MiB  # per stream of each command
    scratch_mb: int = 64

    def sandbox_limits(self) -> SandboxLimits:
        """The limits a sandbox gets: these, each clamped to today's platform maximum."""
        maxima = platform_maxima()
        return SandboxLimits(
            cpus=min(float(self.cpus), maxima["cpus"]),
            memory_mb=min(int(self.memory_mb), int(maxima["memory_mb"])),
            wall_seconds=min(int(self.wall_seconds), int(maxima["wall_seconds"])),
            pids=min(int(self.pids), int(maxima["pids"])),
            output_bytes=min(int(self.output_bytes), int(maxima["output_bytes"])),
            scratch_mb=min(int(self.scratch_mb), int(maxima["scratch_mb"])),
        )


@dataclass
class CheckSpec:
    id: str
    kind: str
    category: str
    points: float = 1.0
    visibility: str = "visible"
    lesson: str = ""  # "<unit>/<lesson>#<anchor>", resolved by the course loader
    lesson_url: str = ""  # filled in by the course loader once `lesson` resolves
    args: dict[str, Any] = field(default_factory=dict)
    line: int | None = field(default=None, compare=False)
    lesson_line: int | None = field(default=None, compare=False)


@dataclass
class PolicySpec:
    max_revisions: int | None = None
    cooldown_seconds: int = 0
    due: dt.datetime | None = None
    late: str = "accept"


@dataclass
class ExampleSpec:
    """A submission the lab must grade a known way (`manage.py lab_selftest`); never shown to learners."""

    folder: str  # relative to the lab folder, e.g. examples/full-jitter
    expect_fail: list[str] = field(default_factory=list)  # check ids that must fail; every other check must pass
    tree_sha256: str = ""  # the folder stored as a submission tree, set when the course is read
    line: int | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return self.folder.rstrip("/").rsplit("/", 1)[-1]


@dataclass
class LabSpec:
    title: str
    slug: str
    unit: str = ""
    instructions: str = "instructions.md"  # a file in the lab folder
    files: FilesSpec = field(default_factory=FilesSpec)
    run_command: list[str] = field(default_factory=list)
    limits: LimitsSpec = field(default_factory=LimitsSpec)
    checks: list[CheckSpec] = field(default_factory=list)
    policy: PolicySpec = field(default_factory=PolicySpec)
    review: dict[str, Any] | None = None  # raw `review:` mapping, parsed by labs.reviews.rubric when shown
    examples: list[ExampleSpec] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The spec as stored in `Lab.spec`: plain JSON, defaults filled in, no source line numbers."""
        data = dataclasses.asdict(self)
        for check in data["checks"]:
            check.pop("line", None)
            check.pop("lesson_line", None)
        for example in data["examples"]:
            example.pop("line", None)
        data["run"] = {"command": data.pop("run_command")}
        data["policy"]["due"] = self.policy.due.isoformat() if self.policy.due else None
        return data

    @property
    def max_points(self) -> float:
        return sum(check.points for check in self.checks)

    def checks_needing_grader(self) -> list[CheckSpec]:
        """Checks whose kind reads the lab's hidden grader/ folder (validate_course then requires one)."""
        out = []
        for check in self.checks:
            kind = check_kind(check.kind)
            if kind is not None and kind.needs_grader:
                out.append(check)
        return out

    def example_folders(self) -> list[tuple[str, int | None]]:
        """The folders the course loader reads as trees for this lab's examples, with their lab.yaml lines."""
        return [(example.folder, example.line) for example in self.examples]

    def hidden_check_ids(self) -> set[str]:
        return {check.id for check in self.checks if check.visibility == "hidden"}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> LabSpec:
        """The typed spec from `Lab.spec`. Tolerant: labs stored by earlier imports may lack fields added since
        (each then takes its default) or carry fields since removed (ignored). Values are not re-validated:
        the importer did that; the platform maxima are applied again by `LimitsSpec.sandbox_limits`."""
        data = data if isinstance(data, dict) else {}
        policy = _known(PolicySpec, data.get("policy"))
        due = policy.pop("due", None)
        return cls(
            title=str(data.get("title") or ""),
            slug=str(data.get("slug") or ""),
            unit=str(data.get("unit") or ""),
            instructions=str(data.get("instructions") or _INSTRUCTIONS_DEFAULT),
            files=FilesSpec(**_known(FilesSpec, data.get("files"))),
            run_command=[str(word) for word in ((data.get("run") or {}).get("command") or [])],
            limits=LimitsSpec(**_known(LimitsSpec, data.get("limits"))),
            checks=[_stored_check(raw, position) for position, raw in enumerate(data.get("checks") or [])],
            policy=PolicySpec(**policy, due=_stored_due(due)),
            review=data.get("review") if isinstance(data.get("review"), dict) else None,
            examples=[ExampleSpec(**_known(ExampleSpec, raw)) for raw in data.get("examples") or [] if raw],
        )


def _known(kind: type, raw: Any) -> dict[str, Any]:
    """The keys of `raw` that `kind` (a dataclass) has, without None values (those take the field default)."""
    names = {f.name for f in dataclasses.fields(kind) if f.name not in ("line", "lesson_line")}
    return {k: v for k, v in (raw or {}).items() if k in names and v is not None} if isinstance(raw, dict) else {}


def _stored_check(raw: Any, position: int) -> CheckSpec:
    values = _known(CheckSpec, raw)
    values.setdefault("id", f"check-{position + 1}")
    values.setdefault("kind", "")
    if "category" not in values:
        kind = check_kind(values["kind"])
        values["category"] = kind.default_category if kind is not None else "correctness"
    return CheckSpec(**values)


def _stored_due(value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


_CHECK_DEFAULTS = CheckSpec(id="", kind="", category="")
_INSTRUCTIONS_DEFAULT = LabSpec.instructions
LAB_FIELDS = (
    "title",
    "slug",
    "unit",
    "instructions",
    "files",
    "run",
    "limits",
    "checks",
    "policy",
    "review",
    "examples",
)
EXAMPLE_FIELDS = ("folder", "expect")
FILES_FIELDS = tuple(f.name for f in dataclasses.fields(FilesSpec))
LIMITS_FIELDS = tuple(f.name for f in dataclasses.fields(LimitsSpec))
CHECK_FIELDS = ("id", "kind", "category", "points", "visibility", "lesson", "args")
POLICY_FIELDS = ("max_revisions", "cooldown_seconds", "due", "late")
RUN_FIELDS = ("command",)


def parse_lab_yaml(text: str, *, file: str, folder_slug: str, problems: list[CourseProblem]) -> LabSpec | None:
    """Validate lab.yaml text; every problem found is appended to `problems`. Returns None when unusable."""
    doc = parse_yaml(text, file=file, problems=problems, what="lab.yaml")
    if doc is None:
        return None
    c = Checker(file=file, doc=doc, problems=problems)
    root = c.mapping(doc.data, (), "lab.yaml")
    if root is None:
        return None
    c.unknown_keys(root, (), LAB_FIELDS, "lab.yaml")
    spec = LabSpec(
        title=c.text(root, (), "title", what="lab.yaml", required=True, max_len=200),
        slug=c.slug(root, (), "slug", what="lab.yaml") or folder_slug,
        unit=c.slug(root, (), "unit", what="lab.yaml"),
        instructions=c.text(root, (), "instructions", what="lab.yaml", default=_INSTRUCTIONS_DEFAULT),
    )
    if not SLUG_RE.match(spec.slug):
        c.add(
            (),
            f"the lab's slug {spec.slug!r} (from its folder name) is not a valid slug",
            "rename the folder to lower-case letters, digits and hyphens, or set `slug:` in lab.yaml",
        )
    if "/" in spec.instructions or spec.instructions.startswith("."):
        c.add(("instructions",), "instructions must name a file inside the lab folder", "write e.g. `instructions.md`")
    spec.files = _files(c, root)
    spec.run_command = _run(c, root)
    spec.limits = _limits(c, root)
    spec.checks = _checks(c, root)
    spec.policy = _policy(c, root)
    spec.review = _review(c, root)
    spec.examples = _examples(c, root, check_ids=[check.id for check in spec.checks])
    return spec


def _examples(c: Checker, root: dict, *, check_ids: list[str]) -> list[ExampleSpec]:
    raw = root.get("examples")
    if raw is None:
        return []
    if not isinstance(raw, list):
        c.add(("examples",), "examples must be a list", "write one `- folder: examples/NAME` entry per example")
        return []
    out: list[ExampleSpec] = []
    for index, item in enumerate(raw):
        path = ("examples", index)
        entry = c.mapping(item, path, f"example {index + 1}")
        if entry is None:
            continue
        c.unknown_keys(entry, path, EXAMPLE_FIELDS, "an example")
        folder = c.text(entry, path, "folder", what=f"example {index + 1}", required=True).strip().rstrip("/")
        parts = folder.split("/")
        if folder and (folder.startswith("/") or "\\" in folder or ".." in parts or parts[0] in ("starter", "grader")):
            c.add(
                (*path, "folder"),
                f"example folder {folder!r} must be a folder inside the lab, outside starter/ and grader/",
                "keep examples in the lab's examples/ folder, e.g. `folder: examples/full-jitter`",
            )
            continue
        if folder in [example.folder for example in out]:
            c.add((*path, "folder"), f"example folder {folder!r} is listed twice", "list each example once")
            continue
        expect = entry.get("expect", "all-pass")
        expect_fail: list[str] = []
        if isinstance(expect, dict) and set(expect) == {"fail"} and isinstance(expect["fail"], list):
            expect_fail = [str(check_id) for check_id in expect["fail"]]
            unknown = [check_id for check_id in expect_fail if check_id not in check_ids]
            if unknown or not expect_fail:
                c.add(
                    (*path, "expect"),
                    f"example {folder!r} expects unknown or no checks to fail: {', '.join(unknown) or 'none listed'}",
                    f"name checks of this lab: {', '.join(check_ids)}",
                )
        elif expect != "all-pass":
            c.add(
                (*path, "expect"),
                f"example {folder!r} has expect {expect!r}",
                "write `expect: all-pass`, or `expect: {fail: [check-id, ...]}` for the checks it must fail",
            )
        if folder:
            out.append(ExampleSpec(folder=folder, expect_fail=expect_fail, line=c.doc.line(path)))
    return out


def _review(c: Checker, root: dict) -> dict[str, Any] | None:
    raw = root.get("review")
    _, review_problems = parse_review(raw)
    for problem in review_problems:
        c.add(("review",), problem, 'see docs/authoring.md, "Review rubric", for the fields a rubric takes')
    return raw if isinstance(raw, dict) else None


def _files(c: Checker, root: dict) -> FilesSpec:
    spec = FilesSpec()
    if root.get("files") is None:
        return spec
    files = c.mapping(root["files"], ("files",), "files")
    if files is None:
        return spec
    path = ("files",)
    c.unknown_keys(files, path, FILES_FIELDS, "files")
    maxima = platform_maxima()
    spec.required = c.str_list(files, path, "required", what="files")
    if "allowed" in files:
        spec.allowed = c.str_list(files, path, "allowed", what="files")
    for key in ("max_file_bytes", "max_total_bytes", "max_files"):
        value = c.integer(files, path, key, what="files", default=getattr(spec, key), minimum=1, maximum=maxima[key])
        setattr(spec, key, value)
    if spec.max_file_bytes > spec.max_total_bytes:
        c.add(
            (*path, "max_file_bytes"),
            f"max_file_bytes ({spec.max_file_bytes}) is larger than max_total_bytes ({spec.max_total_bytes})",
            "raise max_total_bytes or lower max_file_bytes",
        )
    for key in ("required", "allowed"):
        for index, pattern in enumerate(getattr(spec, key)):
            problem = glob_problem(pattern)
            if problem:
                c.add((*path, key, index), f"bad glob {pattern!r} in files.{key}: {problem}", _GLOB_HINT)
    for index, required in enumerate(spec.required):
        if is_glob(required):
            c.add(
                (*path, "required", index),
                f"required file {required!r} is a glob",
                "list exact paths under `required`; globs belong under `allowed`",
            )
        elif not any(glob_match(pattern, required) for pattern in spec.allowed):
            c.add(
                (*path, "required", index),
                f"required file {required!r} is not matched by any `allowed` glob, so no submission could pass",
                f"add {required!r} (or a glob matching it) to files.allowed",
            )
    return spec


def _run(c: Checker, root: dict) -> list[str]:
    if root.get("run") is None:
        return []
    run = c.mapping(root["run"], ("run",), "run")
    if run is None:
        return []
    c.unknown_keys(run, ("run",), RUN_FIELDS, "run")
    command = run.get("command")
    if command is None:
        c.add(("run",), "run is missing the required field 'command'", 'add `command: ["python", "main.py"]`')
        return []
    if isinstance(command, str):
        # A plain string is split like a shell would, but never run through one.
        try:
            command = shlex.split(command)
        except ValueError as exc:
            c.add(("run", "command"), f"run.command cannot be split into words: {exc}", _COMMAND_HINT)
            return []
    if not isinstance(command, list) or not command or not all(isinstance(a, str | int | float) for a in command):
        c.add(("run", "command"), "run.command must be a non-empty list of words", _COMMAND_HINT)
        return []
    return [str(a) for a in command]


def _limits(c: Checker, root: dict) -> LimitsSpec:
    spec = LimitsSpec()
    if root.get("limits") is None:
        return spec
    limits = c.mapping(root["limits"], ("limits",), "limits")
    if limits is None:
        return spec
    path = ("limits",)
    c.unknown_keys(limits, path, LIMITS_FIELDS, "limits")
    maxima = platform_maxima()
    spec.cpus = c.number(
        limits, path, "cpus", what="limits", default=spec.cpus, minimum_exclusive=0, maximum=maxima["cpus"]
    )
    for key in ("memory_mb", "wall_seconds", "pids", "output_bytes", "scratch_mb"):
        max_hint = (
            f"keep wall_seconds <= {maxima['wall_seconds']} (settings.GRADING_MAX_WALL_SECONDS); split long "
            "scenarios into several checks"
            if key == "wall_seconds"
            else ""
        )
        value = c.integer(
            limits,
            path,
            key,
            what="limits",
            default=getattr(spec, key),
            minimum=1,
            maximum=maxima[key],
            max_hint=max_hint,
        )
        setattr(spec, key, value)
    return spec


def _checks(c: Checker, root: dict) -> list[CheckSpec]:
    raw = root.get("checks")
    if raw is None:
        c.add((), "lab.yaml is missing the required field 'checks'", "add a `checks:` list with at least one check")
        return []
    if not isinstance(raw, list) or not raw:
        c.add(("checks",), "checks must be a non-empty list", "write one `- id: … kind: …` entry per check")
        return []
    seen: dict[str, int] = {}
    checks = []
    for index, item in enumerate(raw):
        path = ("checks", index)
        entry = c.mapping(item, path, f"check {index + 1}")
        if entry is None:
            continue
        what = f"check {index + 1}"
        c.unknown_keys(entry, path, CHECK_FIELDS, "a check")
        check_id = c.slug(entry, path, "id", what=what, required=True)
        kind = c.text(entry, path, "kind", what=what, required=True)
        kind_cls = check_kind(kind)
        category = c.choice(
            entry,
            path,
            "category",
            CATEGORIES,
            what=what,
            default=getattr(kind_cls, "default_category", "correctness"),
        )
        points = c.number(entry, path, "points", what=what, default=_CHECK_DEFAULTS.points, minimum=0)
        visibility = c.choice(entry, path, "visibility", VISIBILITIES, what=what, default=_CHECK_DEFAULTS.visibility)
        lesson = c.text(entry, path, "lesson", what=what)
        args = entry.get("args")
        if args is None:
            args = {}
        if check_id:
            if check_id in seen:
                c.add(
                    (*path, "id"),
                    f"check id {check_id!r} is used twice (first at line {seen[check_id]})",
                    "give every check in the lab its own id",
                )
            else:
                seen[check_id] = c.doc.line((*path, "id"))
        if kind:
            messages = validate_check_spec(kind, args) if isinstance(args, dict) else ["args must be a mapping"]
            for message in messages:
                if kind_cls is None:
                    close = difflib.get_close_matches(kind, sorted(check_kinds()), n=1, cutoff=0.6)
                    hint = f"did you mean {close[0]!r}?" if close else "use one of the registered kinds listed"
                    c.add((*path, "kind"), message, hint)
                else:
                    c.add((*path, "args"), f"check {check_id or index + 1} ({kind}): {message}", _ARGS_HINT)
        checks.append(
            CheckSpec(
                id=check_id,
                kind=kind,
                category=category,
                points=points,
                visibility=visibility,
                lesson=lesson,
                args=args if isinstance(args, dict) else {},
                line=c.doc.line(path),
                lesson_line=c.doc.line((*path, "lesson")),
            )
        )
    return checks


def _policy(c: Checker, root: dict) -> PolicySpec:
    spec = PolicySpec()
    if root.get("policy") is None:
        return spec
    policy = c.mapping(root["policy"], ("policy",), "policy")
    if policy is None:
        return spec
    path = ("policy",)
    c.unknown_keys(policy, path, POLICY_FIELDS, "policy")
    spec.max_revisions = c.integer(policy, path, "max_revisions", what="policy", minimum=1)
    spec.cooldown_seconds = c.integer(
        policy, path, "cooldown_seconds", what="policy", default=spec.cooldown_seconds, minimum=0
    )
    spec.late = c.choice(policy, path, "late", LATE_POLICIES, what="policy", default=spec.late)
    due = policy.get("due")
    if due is not None:
        spec.due = _due(c, due)
    return spec


def _due(c: Checker, value: Any) -> dt.datetime | None:
    hint = "write an ISO 8601 date and time with a time zone, e.g. `due: 2026-12-31T23:59:00Z`"
    parsed: dt.datetime | None = None
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        c.add(("policy", "due"), f"due date {value.isoformat()} has no time of day", hint)
        return None
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            c.add(("policy", "due"), f"due {value!r} is not a date and time", hint)
            return None
    else:
        c.add(("policy", "due"), f"due {value!r} is not a date and time", hint)
        return None
    if parsed.tzinfo is None:
        c.add(("policy", "due"), f"due {parsed.isoformat()} has no time zone", hint)
        return None
    return parsed.astimezone(dt.UTC)


_GLOB_HINT = (
    "write a path relative to the submission root using *, ?, [abc] and **, e.g. `src/**/*.py` or `*.md` "
    '(docs/authoring.md, "File patterns")'
)
_COMMAND_HINT = 'write a list of words, e.g. `command: ["python", "service.py"]`'
_ARGS_HINT = "fix the check's `args:` as the message says; the authoring guide lists each kind's arguments"
