"""Creates the demo logins for ./bin/run: a learner, a reviewer and an instructor, enrolled in every course.

Idempotent: users and enrollments are reused; the password is reset to the current one each run. It comes from
SHIPSHAPE_DEMO_PASSWORD, else from var/demo-password, else a new one is generated and stored there.
"""

import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_USERS = [("learner", "learner"), ("reviewer", "reviewer"), ("instructor", "instructor")]


def demo_password(*, var_dir: Path) -> str:
    from_env = os.environ.get("SHIPSHAPE_DEMO_PASSWORD")
    if from_env:
        return from_env
    stored = var_dir / "demo-password"
    if stored.exists():
        return stored.read_text().strip()
    password = secrets.token_urlsafe(12)
    var_dir.mkdir(parents=True, exist_ok=True)
    stored.touch(mode=0o600)
    stored.write_text(password + "\n")
    return password


def main() -> int:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from courses.models import Course
    from courses.services.learning import enrollment_create

    password = demo_password(var_dir=ROOT / "var")
    user_model = get_user_model()
    courses = list(Course.objects.all())
    for username, role in DEMO_USERS:
        user, _ = user_model.objects.get_or_create(username=username, defaults={"email": f"{username}@example.org"})
        # The instructor doubles as the site admin so the demo can show Django admin.
        user.is_staff = user.is_superuser = role == "instructor"
        user.set_password(password)
        user.save()
        for course in courses:
            enrollment_create(user=user, course=course, role=role)
    print(f"demo logins ({len(courses)} course(s)): " + ", ".join(name for name, _ in DEMO_USERS))
    print(f"demo password: {password}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
