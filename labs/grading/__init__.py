"""Grading: `orchestrator` directs one run, `state` owns every grading state change, `scoring` computes scores.

Entry point: `labs.grading.orchestrator.grade_revision(revision_id=..., worker=...)`, called by the Celery
task `labs.tasks.revision_grade`. State lives in a per-run `RunState`, never on the task object.
"""
