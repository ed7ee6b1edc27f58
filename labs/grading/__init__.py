"""Grading orchestrator: claims a revision, runs its lab's checks in a sandbox, stores the verdict.

Entry point: `labs.grading.orchestrator.grade_revision(revision_id=..., worker=...)`, called by the Celery
task `labs.tasks.revision_grade`. State lives in a per-run `RunState`, never on the task object.
"""
