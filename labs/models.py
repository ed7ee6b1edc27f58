from datetime import datetime, timedelta
from functools import cached_property

from django.conf import settings
from django.db import models
from django.utils import timezone

from courses.models import Course, Unit
from labs.labspec import LabSpec


class Lab(models.Model):
    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="labs")
    unit = models.ForeignKey(Unit, on_delete=models.CASCADE, related_name="labs")
    slug = models.SlugField(max_length=100)
    title = models.CharField(max_length=200)
    source_path = models.CharField(max_length=500, help_text="The lab's folder, relative to the course directory.")
    instructions_html = models.TextField(blank=True)
    toc = models.JSONField(default=list, blank=True)
    spec = models.JSONField(help_text="lab.yaml after validation and defaults.")
    content_hash = models.CharField(max_length=64)
    grader_digest = models.CharField(max_length=64, help_text="sha256 of the stored grader bundle.")
    starter_digest = models.CharField(max_length=64, blank=True)
    hidden_revealed_at = models.DateTimeField(
        null=True, blank=True, help_text="When an instructor revealed the hidden checks (labs without a due date)."
    )

    # Written by the course import from the lab's folder; read-only everywhere else.
    IMPORTED_FIELDS = (
        "source_path",
        "instructions_html",
        "toc",
        "spec",
        "content_hash",
        "grader_digest",
        "starter_digest",
    )

    class Meta:
        ordering = ["unit__position", "slug"]
        constraints = [models.UniqueConstraint(fields=["course", "slug"], name="lab_unique_slug_per_course")]

    def __str__(self) -> str:
        return self.title

    @cached_property
    def labspec(self) -> LabSpec:
        """The lab's rules, typed: the one source for limits, upload rules, policy and check points."""
        return LabSpec.from_json(self.spec)

    def refresh_from_db(self, *args, **kwargs) -> None:
        self.__dict__.pop("labspec", None)
        super().refresh_from_db(*args, **kwargs)


class RevisionQuerySet(models.QuerySet):
    def learner_work(self) -> "RevisionQuerySet":
        """Learners' revisions only: no self-test examples, no regrade preview copies."""
        return self.filter(selftest__isnull=True, regrade__isnull=True)


class Revision(models.Model):
    """One submission of a learner's work on a lab. Immutable once stored, apart from its grading state."""

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        GRADED = "graded"
        FAILED = "failed"  # the submission's fault: timeout, out of memory, crash
        ERROR = "error", "Needs attention"  # ours, still failing after retries: waits for staff, never charged

    class FailureReason(models.TextChoices):
        """Why a `failed` revision's code was stopped. Limits that only cut something short (output, scratch
        space, processes) are noted on the run (`GradingRun.resources["limits_hit"]`) and fail the check
        concerned, not the whole revision."""

        NONE = "", "none"
        TIMEOUT = "timeout", "ran past the time limit"
        OOM = "oom", "ran out of memory"
        CRASH = "crash", "the sandbox stopped while it ran"

    lab = models.ForeignKey(Lab, on_delete=models.CASCADE, related_name="revisions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    tree_sha256 = models.CharField(max_length=64, help_text="sha256 over the sorted (path, file sha256) list.")
    files = models.JSONField(default=list, help_text="[{path, size, sha256}]")
    total_bytes = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True, help_text="When the sweeper may requeue it.")
    score = models.DecimalField(max_digits=8, decimal_places=2, null=True, blank=True)
    max_score = models.DecimalField(max_digits=8, decimal_places=2, null=True, blank=True)
    scores_by_category = models.JSONField(default=dict, blank=True)
    failure_reason = models.CharField(max_length=40, blank=True, choices=FailureReason.choices, default="")
    failure_message = models.TextField(blank=True)
    error_count = models.PositiveIntegerField(default=0)
    is_late = models.BooleanField(default=False)
    selftest = models.ForeignKey(
        "LabSelfTest",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="revisions",
        help_text="Set on a lab example graded by a self-test: not a learner's work.",
    )
    example = models.CharField(max_length=200, blank=True, help_text="The example folder, for self-test revisions.")
    regrade = models.ForeignKey(
        "Regrade",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="shadow_revisions",
        help_text="Set on a regrade preview's copy of a learner's revision: graded apart, never a learner's work.",
    )
    regrade_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="regrade_copies",
        help_text="The learner's revision a regrade preview copy was made from.",
    )
    review_status = models.CharField(
        max_length=20,
        choices=[
            ("", "not reviewed"),
            ("approved", "approved"),
            ("changes_requested", "changes requested"),
        ],
        default="",
        blank=True,
        help_text="The latest review decision; the loop repeats until a revision is approved.",
    )

    objects = RevisionQuerySet.as_manager()

    class Meta:
        ordering = ["lab", "user", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["lab", "user", "number"], name="revision_unique_number"),
        ]
        indexes = [models.Index(fields=["state", "deadline_at"])]

    def __str__(self) -> str:
        return f"{self.lab.slug} r{self.number} by {self.user}"

    @property
    def is_finished(self) -> bool:
        return self.state in {self.State.GRADED, self.State.FAILED}

    @property
    def is_learner_work(self) -> bool:
        """False for a lab self-test's example and a regrade preview's copy: graded like work, never counted."""
        return self.selftest_id is None and self.regrade_id is None


class LabSelfTest(models.Model):
    """One `manage.py lab_selftest`: the lab's examples graded through the normal queue, compared with what the
    lab says each must get. Its revisions belong to a system account and are kept apart from learners' work."""

    class Status(models.TextChoices):
        RUNNING = "running"
        AGREED = "agreed"  # every verdict as expected, no flips between repeats
        DISAGREED = "disagreed"
        TIMED_OUT = "timed_out"

    lab = models.ForeignKey(Lab, on_delete=models.CASCADE, related_name="selftests")
    requested_by = models.CharField(max_length=150, blank=True)
    repeat = models.PositiveIntegerField(default=1)
    load = models.BooleanField(default=False, help_text="Both cores were kept busy while it ran.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    report = models.JSONField(default=dict, blank=True, help_text="Expected against actual per example and check.")

    class Meta:
        ordering = ["-created_at"]


class GradingRun(models.Model):
    """One attempt at grading a revision; a revision retried after our error has several."""

    class Phase(models.TextChoices):
        QUEUED = "queued", "Queued"
        STARTED = "started", "Started"
        SANDBOX_READY = "sandbox_ready", "Sandbox ready"
        CHECKS = "checks", "Running checks"  # check_position says which, without naming a hidden one
        CHECKS_FINISHED = "checks_finished", "Checks finished"
        RESULTS_STORED = "results_stored", "Results stored"
        ERROR = "error", "Stopped by a problem on our side"
        ABANDONED = "abandoned", "Abandoned: the worker stopped"

    # The phases a run passes through in order, each stamped with the time it was reached (queued: the revision's).
    STAMPED_PHASES = (
        (Phase.QUEUED, "queued_at"),
        (Phase.STARTED, "started_at"),
        (Phase.SANDBOX_READY, "sandbox_ready_at"),
        (Phase.CHECKS_FINISHED, "checks_finished_at"),
        (Phase.RESULTS_STORED, "results_stored_at"),
    )

    class Outcome(models.TextChoices):
        RUNNING = "", "running"
        GRADED = "graded"
        FAILED = "failed"
        ERROR = "error"
        ABANDONED = "abandoned"

    revision = models.ForeignKey(Revision, on_delete=models.CASCADE, related_name="runs")
    attempt = models.PositiveIntegerField()
    worker = models.CharField(max_length=200, blank=True)
    image_digest = models.CharField(max_length=100, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    sandbox_ready_at = models.DateTimeField(null=True, blank=True)
    checks_finished_at = models.DateTimeField(null=True, blank=True)
    results_stored_at = models.DateTimeField(null=True, blank=True)
    phase = models.CharField(max_length=40, choices=Phase.choices, default=Phase.QUEUED)
    check_position = models.PositiveIntegerField(null=True, blank=True, help_text="0-based; during `checks`.")
    outcome = models.CharField(max_length=10, choices=Outcome.choices, blank=True, default=Outcome.RUNNING)
    error_detail = models.TextField(blank=True, help_text="Staff only.")
    log = models.TextField(blank=True, help_text="Size-capped, cleaned output of the visible checks.")
    hidden_log = models.TextField(
        blank=True, help_text="The hidden checks' output: staff only, and the learner once hidden checks are revealed."
    )
    resources = models.JSONField(
        default=dict, blank=True, help_text="wall_seconds, peak_memory_bytes, limits, limits_hit"
    )

    class Meta:
        ordering = ["revision", "attempt"]
        constraints = [models.UniqueConstraint(fields=["revision", "attempt"], name="run_unique_attempt")]


class CheckResult(models.Model):
    class Status(models.TextChoices):
        PASS = "pass"
        FAIL = "fail"
        ERROR = "error"
        SKIPPED = "skipped"

    run = models.ForeignKey(GradingRun, on_delete=models.CASCADE, related_name="check_results")
    position = models.PositiveIntegerField()
    check_id = models.CharField(max_length=100)
    kind = models.CharField(max_length=60)
    category = models.CharField(max_length=40)
    status = models.CharField(max_length=10, choices=Status.choices)
    points = models.DecimalField(max_digits=8, decimal_places=2)
    max_points = models.DecimalField(max_digits=8, decimal_places=2)
    message = models.TextField()
    hint = models.TextField(blank=True)
    hint_url = models.CharField(max_length=500, blank=True)
    evidence = models.JSONField(default=dict, blank=True)
    hidden_until_due = models.BooleanField(default=False)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["run", "position"]
        constraints = [models.UniqueConstraint(fields=["run", "check_id"], name="result_unique_check_per_run")]


class Review(models.Model):
    """A reviewer's verdict on one revision: rubric scores, comments, and approve or ask for a revision."""

    class Decision(models.TextChoices):
        APPROVE = "approved", "Approved"
        REQUEST_CHANGES = "changes_requested", "Changes requested"

    revision = models.ForeignKey(Revision, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews_given")
    decision = models.CharField(max_length=20, choices=Decision.choices, blank=True)
    rubric_scores = models.JSONField(default=dict, blank=True, help_text="{criterion id: points}")
    rubric_total = models.DecimalField(max_digits=8, decimal_places=2, null=True, blank=True)
    comment = models.TextField(blank=True)
    file_comments = models.JSONField(default=list, blank=True, help_text="[{path, line, body}]")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    submitted_at = models.DateTimeField(
        null=True, blank=True, help_text="Empty while the review is a draft: only its reviewer sees a draft."
    )

    class Meta:
        ordering = ["revision", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["revision", "reviewer"], name="review_one_per_reviewer_per_revision")
        ]


class LabWork(models.Model):
    """A learner's work on one lab, across all its revisions: where it stands in the review loop and its grades.

    Every change of `state` (and of the claim) goes through labs.reviews.loop, which records a WorkEvent.
    Grades are percentages (0-100) so that labs with different maxima compare in the gradebook.
    """

    class State(models.TextChoices):
        SUBMITTED = "submitted", "Submitted"  # its newest revision is queued or being graded
        AUTOGRADED = "autograded", "Autograded"  # graded; this lab has no review (review.required: false)
        BELOW_THRESHOLD = "below_threshold", "Below the review threshold"
        AWAITING_REVIEW = "awaiting_review", "Awaiting review"
        IN_REVIEW = "in_review", "In review"
        CHANGES_REQUESTED = "changes_requested", "Changes requested"
        APPROVED = "approved", "Approved"

    lab = models.ForeignKey(Lab, on_delete=models.CASCADE, related_name="works")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="lab_works")
    state = models.CharField(max_length=20, choices=State.choices, default=State.SUBMITTED)
    revision = models.ForeignKey(
        Revision, on_delete=models.CASCADE, related_name="+", help_text="The newest revision: what the loop is about."
    )
    reviewed_revision = models.ForeignKey(
        Revision,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The last revision a reviewer decided on: the review page diffs against it.",
    )
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="claimed_works"
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    waiting_since = models.DateTimeField(
        null=True, blank=True, help_text="When it entered the review queue: the queue is oldest first."
    )
    autograde = models.DecimalField(
        max_digits=6, decimal_places=2, null=True, blank=True, help_text="% of the newest graded revision."
    )
    rubric = models.DecimalField(
        max_digits=6, decimal_places=2, null=True, blank=True, help_text="% of the rubric, from the last review."
    )
    final_grade = models.DecimalField(
        max_digits=6, decimal_places=2, null=True, blank=True, help_text="Empty until the loop allows a grade."
    )
    override_grade = models.DecimalField(
        max_digits=6, decimal_places=2, null=True, blank=True, help_text="An instructor's grade; wins over all."
    )
    is_late = models.BooleanField(default=False)
    revision_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["lab", "user"]
        constraints = [models.UniqueConstraint(fields=["lab", "user"], name="work_one_per_learner_per_lab")]
        # The review queue counts and sorts a course's waiting works, the reviewer's own left out: every column
        # those queries read is in the index, so neither reads the table (labs.reviews.selectors.review_queue_page).
        indexes = [models.Index(fields=["lab", "state", "waiting_since", "user"], name="labwork_review_queue_idx")]

    def __str__(self) -> str:
        return f"{self.lab.slug} by {self.user}"

    @property
    def grade(self):
        """The grade that counts: an override, else the loop's final grade."""
        return self.override_grade if self.override_grade is not None else self.final_grade


class WorkEvent(models.Model):
    """One entry of a work's timeline: a state change, a claim, an override, a regrade. Never edited."""

    class Kind(models.TextChoices):
        SUBMITTED = "submitted", "Submitted a revision"
        AUTOGRADED = "autograded", "Autograded"
        NEEDS_ATTENTION = "needs_attention", "Grading needs attention (our side)"
        BELOW_THRESHOLD = "below_threshold", "Below the review threshold"
        AWAITING_REVIEW = "awaiting_review", "Waiting for a reviewer"
        CLAIMED = "claimed", "A reviewer took it"
        RELEASED = "released", "Released by the reviewer"
        CLAIM_EXPIRED = "claim_expired", "The reviewer's claim expired"
        CHANGES_REQUESTED = "changes_requested", "Changes requested"
        APPROVED = "approved", "Approved"
        OVERRIDDEN = "overridden", "Grade overridden"
        OVERRIDE_REMOVED = "override_removed", "Grade override removed"
        REGRADED = "regraded", "Regraded"

    work = models.ForeignKey(LabWork, on_delete=models.CASCADE, related_name="events")
    revision = models.ForeignKey(Revision, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty for the platform (grading, expiry).",
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    from_state = models.CharField(max_length=20, blank=True)
    to_state = models.CharField(max_length=20, blank=True)
    reason = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["work", "created_at", "pk"]


class GradeOverride(models.Model):
    """The audit log of grade overrides: every one kept, the newest (unless removed) counts."""

    work = models.ForeignKey(LabWork, on_delete=models.CASCADE, related_name="overrides")
    grade = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True, help_text="Empty: removed.")
    previous_grade = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    reason = models.TextField()
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["work", "created_at", "pk"]


class Regrade(models.Model):
    """A lab's grader run again over every learner's newest revision, first as a preview that changes nothing;
    applied (the changed results replace the old ones) or discarded by an instructor. Kept as history."""

    class Status(models.TextChoices):
        RUNNING = "running", "Preview running"
        READY = "ready", "Preview ready"
        CANCELLED = "cancelled", "Cancelled"
        APPLIED = "applied", "Applied"
        DISCARDED = "discarded", "Discarded"

    lab = models.ForeignKey(Lab, on_delete=models.CASCADE, related_name="regrades")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    grader_digest = models.CharField(max_length=64, help_text="The grader bundle the preview ran.")
    total = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0)
    report = models.JSONField(default=dict, blank=True, help_text="Per learner: old and new results, check by check.")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-pk"]


API_TOKEN_DEFAULT_LIFETIME_DAYS = 90


def api_token_default_expiry() -> datetime:
    """When a token made without a chosen lifetime stops working (also what rows older than the field got)."""
    return timezone.now() + timedelta(days=API_TOKEN_DEFAULT_LIFETIME_DAYS)


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    key_sha256 = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8, help_text="Shown to the user to tell tokens apart.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(
        default=api_token_default_expiry, help_text="The API refuses the token from this moment on."
    )

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()


class Blob(models.Model):
    """One file's bytes, stored once per content (named by its sha256). The database is the one store every host
    shares, so a worker on another host reads submitted files and grader bundles from here (labs.blobs)."""

    sha256 = models.CharField(max_length=64, primary_key=True)
    size = models.PositiveBigIntegerField()
    data = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now)


class BlobTree(models.Model):
    """A folder made of blobs: a submitted tree, a grader bundle or a starter's files, named by its digest
    (labs.uploads.tree_digest for submissions, courses.coursefs.tree_digest for bundles)."""

    class Kind(models.TextChoices):
        SUBMISSION = "submission"
        GRADER = "grader"
        STARTER = "starter"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    digest = models.CharField(max_length=64)
    manifest = models.JSONField(default=list, help_text="[{path, size, sha256, executable}], sorted by path.")
    total_bytes = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "digest"], name="labs_blobtree_kind_digest")]

    def __str__(self) -> str:
        return f"{self.kind} {self.digest[:12]}"
