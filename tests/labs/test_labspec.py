"""LabSpec is the one source of a lab's rules: documented defaults, tolerant loading of stored specs, platform
maxima applied at run time, and every consumer (uploads, policy, sandbox, Celery limits) reading it."""

from __future__ import annotations

import ast
import datetime as dt
import re
from pathlib import Path

import pytest

from labs.grading.state import grading_wall_seconds, task_time_limits
from labs.labspec import LabSpec, LimitsSpec, parse_lab_yaml
from labs.reviews.rubric import review_spec_for_lab
from labs.uploads import UploadRules

from .factories import make_lab

AUTHORING = Path(__file__).resolve().parents[2] / "docs" / "authoring.md"
MINIMAL = """\
title: Minimal
checks:
  - id: has-main
    kind: files.required
    args: {paths: [main.py]}
  - id: runs
    kind: command
    args: {argv: [python, main.py]}
"""


def parse(text: str, folder: str = "minimal-lab") -> LabSpec:
    problems: list = []
    spec = parse_lab_yaml(text, file="lab.yaml", folder_slug=folder, problems=problems)
    assert problems == [] and spec is not None
    return spec


def documented_defaults() -> dict[str, str]:
    """The `field | default` table under "### Defaults" in the authoring guide."""
    section = AUTHORING.read_text().split("### Defaults", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| (.+?) \|$", section, re.M)
    return dict(rows)


def _literal(documented: str):
    word = documented.split("`")[1]
    try:
        return ast.literal_eval(word)
    except (ValueError, SyntaxError):
        return word  # a bare word such as instructions.md or visible


def _value(spec: LabSpec, field: str):
    if field.startswith("checks[]."):
        return getattr(spec.checks[1], field.removeprefix("checks[]."))
    if field == "run.command":
        return spec.run_command
    value = spec
    for part in field.split("."):
        value = getattr(value, part)
    return value


@pytest.mark.django_db
def test_a_lab_yaml_with_only_required_fields_gets_every_documented_default():
    spec = parse(MINIMAL)
    table = documented_defaults()
    words = {
        "the folder name": "minimal-lab",
        "the kind's own category": "correctness",
        "none": None,
        "unlimited": None,
        "`[]`": [],
    }
    checked = 0
    for field, documented in table.items():
        if field == "review":
            continue  # the rubric's defaults are tested with the rubric
        actual = _value(spec, field)
        if field == "checks[].args":
            assert spec.checks[1].args == {"argv": ["python", "main.py"]}  # given, so test the omitted default
            assert LabSpec.from_json({"checks": [{"id": "x", "kind": "command"}]}).checks[0].args == {}
        elif documented in words:
            assert actual == words[documented] or (documented == "none" and actual == ""), field
        else:
            assert actual == _literal(documented), field
        checked += 1
    assert checked == 23
    assert review_spec_for_lab(make_lab(spec=spec.to_json())).criteria[0].points == 10


def test_it_documents_every_lab_yaml_field_in_the_defaults_table():
    table = documented_defaults()
    spec = parse(MINIMAL)
    data = spec.to_json()
    fields = {"slug", "instructions", "run.command", "review"}
    for section in ("files", "limits", "policy"):
        fields |= {f"{section}.{key}" for key in data[section]}
    fields |= {f"checks[].{key}" for key in data["checks"][0] if key not in ("id", "kind", "lesson_url")}
    assert fields == set(table)


def test_stored_specs_from_earlier_imports_load_with_defaults_for_what_they_lack():
    old = {
        "title": "Old",
        "checks": [{"id": "a", "kind": "command", "args": {"argv": ["true"]}}, {"kind": "files.required"}],
        "limits": {"memory_mb": 128, "retired_field": 1},
        "policy": {"max_revisions": None, "due": "2030-01-31T23:59:00+00:00"},
        "something_removed_since": True,
    }

    spec = LabSpec.from_json(old)

    assert [c.points for c in spec.checks] == [1.0, 1.0]  # CheckSpec's default, as validate_course documents it
    assert [c.id for c in spec.checks] == ["a", "check-2"]
    assert [c.category for c in spec.checks] == ["correctness", "correctness"]
    assert (spec.limits.memory_mb, spec.limits.wall_seconds) == (128, LimitsSpec().wall_seconds)
    assert spec.policy.due == dt.datetime(2030, 1, 31, 23, 59, tzinfo=dt.UTC)
    assert spec.policy.max_revisions is None
    assert LabSpec.from_json(None).checks == []


def test_a_spec_survives_storing_and_loading_unchanged():
    spec = parse(MINIMAL + "policy: {due: 2030-01-31T23:59:00Z, cooldown_seconds: 5, late: reject}\n")

    assert LabSpec.from_json(spec.to_json()).to_json() == spec.to_json()


def test_run_time_limits_are_clamped_to_todays_platform_maxima(settings):
    spec = parse(MINIMAL + "limits: {memory_mb: 1024, wall_seconds: 600, cpus: 2}\n")
    settings.GRADING_MAX_MEMORY_MB = 512
    settings.GRADING_MAX_WALL_SECONDS = 300
    settings.GRADING_MAX_CPUS = 1

    limits = spec.limits.sandbox_limits()

    assert (limits.memory_mb, limits.wall_seconds, limits.cpus) == (512, 300, 1.0)


@pytest.mark.django_db
def test_the_celery_time_limit_follows_the_same_clamped_budget_as_the_sandbox(settings):
    lab = make_lab(spec=parse(MINIMAL + "limits: {wall_seconds: 600}\n").to_json())
    settings.GRADING_MAX_WALL_SECONDS = 200
    revision = type("R", (), {"lab": lab})()

    soft, hard = task_time_limits(revision=revision)

    assert grading_wall_seconds(revision=revision) == lab.labspec.limits.sandbox_limits().wall_seconds == 200
    assert (soft, hard) == (260, 290)


@pytest.mark.django_db
def test_upload_rules_and_policy_come_from_the_stored_spec():
    text = MINIMAL + (
        "files: {required: [main.py], allowed: ['*.py'], max_file_bytes: 2000, max_total_bytes: 4000, max_files: 3}\n"
        "policy: {max_revisions: 4, cooldown_seconds: 9}\n"
    )
    lab = make_lab(spec=parse(text).to_json())

    rules = UploadRules.for_files(lab.labspec.files)

    assert (rules.required, rules.allowed) == (("main.py",), ("*.py",))
    assert (rules.max_file_bytes, rules.max_total_bytes, rules.max_files) == (2000, 4000, 3)
    assert (lab.labspec.policy.max_revisions, lab.labspec.policy.cooldown_seconds) == (4, 9)
