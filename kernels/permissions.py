"""Who may run code cells. One condition per line, each tested (tests/kernels/test_api.py)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from courses.models import Lesson
from courses.permissions import can_read_lessons

User = AbstractBaseUser | AnonymousUser


def can_run_code(*, user: User, lesson: Lesson) -> bool:
    if not user.is_authenticated:
        return False
    if not user.is_active:
        return False
    if not lesson.code_cells:
        return False
    return can_read_lessons(user=user)
