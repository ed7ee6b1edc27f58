"""`manage.py gradebook_export COURSE [--lab L] > grades.csv`: the gradebook as CSV on stdout (see
labs/gradebook/export.py for the columns and the escaping of formula-like cells)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from courses.models import Course
from labs.gradebook.export import gradebook_csv_lines
from labs.gradebook.selectors import GradebookFilters
from labs.models import Lab


class Command(BaseCommand):
    help = "Write a course's gradebook as CSV to stdout: one line per learner and lab."

    def add_arguments(self, parser) -> None:
        parser.add_argument("course", help="the course's slug")
        parser.add_argument("--lab", default="", help="only this lab (its slug)")

    def handle(self, *args, course: str, lab: str, **options) -> None:
        found = Course.objects.filter(slug=course).first()
        if found is None:
            slugs = ", ".join(Course.objects.order_by("slug").values_list("slug", flat=True)) or "none yet"
            raise CommandError(f"No course {course!r}. Pass a course's slug as COURSE; courses: {slugs}.")
        if lab and not Lab.objects.filter(course=found, slug=lab).exists():
            slugs = ", ".join(Lab.objects.filter(course=found).values_list("slug", flat=True)) or "none"
            raise CommandError(f"No lab {lab!r} in {course}. Pass one of its labs' slugs to --lab: {slugs}.")
        for line in gradebook_csv_lines(course=found, filters=GradebookFilters(lab=lab)):
            self.stdout.write(line, ending="")
