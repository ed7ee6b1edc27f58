"""The labs app's side of `courses.extensions.CourseLabs`: lab.yaml parsing, bundles and lab rows for the course
import, and the course page's lab list. Registered by `labs.apps.LabsConfig.ready`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.yamlsrc import CourseProblem
from courses.coursefs import LabEntry
from courses.models import Course, Unit
from labs import bundles, selectors, storage
from labs.labspec import LabSpec, parse_lab_yaml
from labs.models import Lab, Revision
from labs.uploads import UploadRejected, UploadRules, validate_upload

_CHUNK = 500  # stays well below SQLite's bound-parameter limit
_LAB_FIELDS = ["unit", "title", *Lab.IMPORTED_FIELDS]


class LabsForCourses:
    def lab_parse(self, text: str, *, file: str, folder_slug: str, problems: list[CourseProblem]) -> LabSpec | None:
        return parse_lab_yaml(text, file=file, folder_slug=folder_slug, problems=problems)

    def lab_check(self, *, lab: LabEntry, problems: list[CourseProblem]) -> None:
        spec: LabSpec = lab.spec  # type: ignore[assignment]
        yaml_file = f"{lab.folder}/lab.yaml"
        for check in spec.checks_needing_grader():
            if lab.grader is None or not lab.grader.files:
                problems.append(
                    CourseProblem(
                        yaml_file,
                        check.line,
                        f"check {check.id!r} ({check.kind}) reads the grader's files but {lab.folder}/grader/ is "
                        "missing or empty",
                        f"create {lab.folder}/grader/ with the hidden tests or fixtures this check needs",
                    )
                )
        rules = UploadRules.for_files(spec.files)
        for example in spec.examples:
            tree = lab.examples.get(example.folder)
            if tree is None:
                continue  # the loader reported the missing folder
            try:
                validated = validate_upload(
                    [(rel, (tree.root / rel).read_bytes()) for rel, *_ in tree.files], rules=rules
                )
            except UploadRejected as exc:
                problems.append(
                    CourseProblem(
                        yaml_file,
                        example.line,
                        f"example {example.folder} is not a submission this lab accepts: {'; '.join(exc.problems)}",
                        "make the example a valid submission (files:) so it is graded like a learner's",
                    )
                )
                continue
            example.tree_sha256 = validated.tree_sha256

    def lab_bundles_store(self, *, lab: LabEntry) -> None:
        if lab.grader is not None and lab.grader.files:
            bundles.grader_store(tree=lab.grader)
        if lab.starter is not None and lab.starter.files:
            bundles.starter_store(tree=lab.starter)
        rules = UploadRules.for_files(lab.spec.files)  # type: ignore[attr-defined]
        for tree in lab.examples.values():
            # Stored like a learner's submission, so the normal queue and workers grade it (lab_selftest).
            files = [(rel, (tree.root / rel).read_bytes()) for rel, *_ in tree.files]
            storage.tree_store(tree=validate_upload(files, rules=rules))

    def labs_upsert(self, *, course: Course, labs: Sequence[LabEntry], units: dict[str, Unit], report: Any) -> None:
        existing = {lab.slug: lab for lab in Lab.objects.filter(course=course)}
        for entry in labs:
            row = existing.pop(entry.slug, None)
            values = _lab_values(entry, unit=units[entry.unit_slug])
            if row is None:
                Lab.objects.create(course=course, slug=entry.slug, **values)
                report.added.append(f"lab {entry.slug}")
            elif row.content_hash != entry.content_hash or row.unit_id != values["unit"].id:
                for name, value in values.items():
                    setattr(row, name, value)
                row.save(update_fields=_LAB_FIELDS)
                report.changed.append(f"lab {entry.slug}")
            else:
                report.unchanged += 1
        removed = list(existing.values())
        for lab in removed:
            report.removed.append(f"lab {lab.slug}")
        if removed:
            report.learner_data_removed["lab revisions"] = Revision.objects.filter(lab__in=removed).count()
        ids = [lab.id for lab in removed]
        for start in range(0, len(ids), _CHUNK):
            Lab.objects.filter(id__in=ids[start : start + _CHUNK]).delete()

    def labs_by_unit(self, *, course: Course) -> dict[int, list[dict[str, Any]]]:
        return selectors.labs_by_unit(course=course)


def _lab_values(lab: LabEntry, *, unit: Unit) -> dict[str, Any]:
    return {
        "unit": unit,
        "title": lab.spec.title,
        "source_path": lab.folder,
        "instructions_html": lab.rendered.html if lab.rendered else "",
        "toc": lab.rendered.toc if lab.rendered else [],
        "spec": lab.spec.to_json(),
        "content_hash": lab.content_hash,
        "grader_digest": lab.grader_digest,
        "starter_digest": lab.starter.digest if lab.starter and lab.starter.files else "",
    }
