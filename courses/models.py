from django.conf import settings
from django.db import models


class Course(models.Model):
    slug = models.SlugField(max_length=100, unique=True)
    title = models.CharField(max_length=200)
    summary = models.TextField(blank=True)
    unit_label = models.CharField(max_length=40, default="Unit", help_text='What a unit is called: "Week", "Module".')
    content_version = models.CharField(max_length=80, blank=True, help_text="Git commit or content hash.")
    imported_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title


class Unit(models.Model):
    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="units")
    slug = models.SlugField(max_length=100)
    title = models.CharField(max_length=200)
    summary = models.TextField(blank=True)
    position = models.PositiveIntegerField(help_text="Order in the course, from 1.")
    number = models.PositiveIntegerField(
        default=0, help_text='Shown after the unit label, as in "Week 5"; 0 means "use the position".'
    )
    label = models.CharField(
        max_length=40, blank=True, help_text='What this unit is called ("Module", "Essay"); blank: the course\'s label.'
    )
    track = models.CharField(max_length=80, blank=True, help_text='A line shown before the label: "Advanced mastery".')

    class Meta:
        ordering = ["course", "position"]
        constraints = [models.UniqueConstraint(fields=["course", "slug"], name="unit_unique_slug_per_course")]

    def __str__(self) -> str:
        return f"{self.display_label} {self.number}: {self.title}"

    def save(self, *args, **kwargs) -> None:
        if not self.number:
            self.number = self.position
        super().save(*args, **kwargs)

    @property
    def display_label(self) -> str:
        """The unit's own label, else the course's (select the course with the unit to avoid a query)."""
        return self.label or self.course.unit_label


class Lesson(models.Model):
    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="lessons")
    unit = models.ForeignKey(Unit, on_delete=models.CASCADE, related_name="lessons")
    slug = models.SlugField(max_length=100)
    position = models.PositiveIntegerField(help_text="Order within the unit.")
    title = models.CharField(max_length=200)
    tagline = models.CharField(max_length=300, blank=True)
    objective = models.TextField(blank=True)
    objective_detail = models.TextField(blank=True, help_text="A second line under the objective.")
    deliverable = models.TextField(blank=True)
    deliverable_detail = models.TextField(blank=True, help_text="A second line under the deliverable.")
    reflection = models.TextField(blank=True, help_text="A reflection prompt shown at the end of the lesson.")
    header_html = models.JSONField(
        default=dict, blank=True, help_text="The front matter's text fields rendered as sanitised inline HTML."
    )
    outcomes = models.JSONField(default=list, blank=True)
    prerequisites = models.JSONField(default=list, blank=True)
    estimated_minutes = models.PositiveIntegerField(null=True, blank=True)
    references = models.JSONField(default=list, blank=True, help_text="[{kind, title, url, description}]")
    source_path = models.CharField(max_length=500, help_text="Path relative to the course directory.")
    content_hash = models.CharField(max_length=64)
    html = models.TextField(blank=True)
    toc = models.JSONField(default=list, blank=True)
    code_cells = models.JSONField(
        default=list,
        blank=True,
        help_text='Runnable code cells in document order: [{index, language, code, check}] ("python run" fences).',
    )

    class Meta:
        ordering = ["unit__position", "position"]
        constraints = [models.UniqueConstraint(fields=["unit", "slug"], name="lesson_unique_slug_per_unit")]
        # Previous/next links walk lessons by (unit, position) on every lesson page.
        indexes = [models.Index(fields=["unit", "position"], name="lesson_unit_position")]

    def __str__(self) -> str:
        return self.title


class Quiz(models.Model):
    """A `quiz` block inside a lesson. Graded quizzes keep their answers server-side."""

    lesson = models.ForeignKey(Lesson, on_delete=models.CASCADE, related_name="quizzes")
    key = models.SlugField(max_length=100, help_text="Stable id of the block within its lesson.")
    title = models.CharField(max_length=200, blank=True)
    graded = models.BooleanField(default=False)
    max_attempts = models.PositiveIntegerField(null=True, blank=True)
    questions = models.JSONField(default=list)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["lesson", "position"]
        constraints = [models.UniqueConstraint(fields=["lesson", "key"], name="quiz_unique_key_per_lesson")]

    def __str__(self) -> str:
        return f"{self.lesson.slug}#{self.key}"


class QuizAttempt(models.Model):
    quiz = models.ForeignKey(Quiz, on_delete=models.CASCADE, related_name="attempts")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quiz_attempts")
    answers = models.JSONField(default=dict)
    score = models.PositiveIntegerField()
    max_score = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["quiz", "user"])]


class Enrollment(models.Model):
    class Role(models.TextChoices):
        LEARNER = "learner"
        REVIEWER = "reviewer"
        INSTRUCTOR = "instructor"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="enrollments")
    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="enrollments")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.LEARNER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "course"], name="enrollment_unique_user_course")]


class LessonProgress(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="lesson_progress")
    lesson = models.ForeignKey(Lesson, on_delete=models.CASCADE, related_name="progress")
    completed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "lesson"], name="progress_unique_user_lesson")]


class RenderedMarkdown(models.Model):
    """Rendered HTML cached by the hash of its source and the renderer's version."""

    content_hash = models.CharField(max_length=64, primary_key=True)
    html = models.TextField()
    toc = models.JSONField(default=list)
    blocks = models.JSONField(default=list, help_text="Structured blocks (quizzes) found while rendering.")
    created_at = models.DateTimeField(auto_now_add=True)


class LessonMark(models.Model):
    """A reader's state on a lesson page: the answers they opened in a quiz, the items they ticked in a checklist.

    `key` is "quiz:<quiz key>" (value: opened question ids) or "checklist:<n>" (value: ticked item indices)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="lesson_marks")
    lesson = models.ForeignKey(Lesson, on_delete=models.CASCADE, related_name="marks")
    key = models.CharField(max_length=120)
    value = models.JSONField(default=list)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "lesson", "key"], name="lessonmark_unique_user_lesson_key")
        ]


class CourseAsset(models.Model):
    """A file a course ships (an image, an SVG figure, a data file), stored once by the sha256 of its bytes.

    Kept in the database so every web host can serve it; URLs name the digest, so they can be cached for ever."""

    sha256 = models.CharField(max_length=64, primary_key=True)
    media_type = models.CharField(max_length=100)
    size = models.PositiveIntegerField()
    data = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)
