"""`python manage.py validate_course DIR`: check a course directory without touching the database."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from courses.coursefs import load_course


class Command(BaseCommand):
    help = "Check a course directory and list every problem with file, line and a fix hint. No database needed."
    # System checks and the migration check would reach for the database; this command must work without one.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory", help="the course folder, the one holding course.yaml")

    def handle(self, *args: object, directory: str, **options: object) -> None:
        result = load_course(directory)
        for problem in result.problems:
            self.stdout.write(problem.format())
        if result.problems:
            files = len({problem.file for problem in result.problems})
            raise CommandError(f"{len(result.problems)} problem(s) in {files} file(s); the course was not accepted")
        course = result.course
        assert course is not None  # no problems means the course was read
        self.stdout.write(
            self.style.SUCCESS(
                f"{course.slug}: OK, {len(course.units)} units, {len(course.lessons())} lessons, "
                f"{len(course.labs())} labs, no problems"
            )
        )
