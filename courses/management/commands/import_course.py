"""`python manage.py import_course DIR`: validate, then import the course in one transaction."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from courses.errors import CourseInvalid
from courses.services.importing import course_import


class Command(BaseCommand):
    help = "Validate a course directory and import it (all or nothing), keeping learners' progress on re-import."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory", help="the course folder, the one holding course.yaml")
        parser.add_argument("--dry-run", action="store_true", help="report what would change and write nothing")

    def handle(self, *args: object, directory: str, dry_run: bool = False, **options: object) -> None:
        try:
            report = course_import(path=directory, dry_run=dry_run)
        except CourseInvalid as exc:
            for problem in exc.problems:
                self.stdout.write(problem.format())
            raise CommandError(
                f"{len(exc.problems)} problem(s); nothing was imported and the database is unchanged"
            ) from None
        for line in report.lines():
            self.stdout.write(line)
