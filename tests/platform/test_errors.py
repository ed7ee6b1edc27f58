"""One error family: every app's errors are subclasses of core.errors, so one `except` catches them all."""

import importlib

import pytest

import core.errors
import courses.errors
import labs.errors


def test_catching_the_labs_platform_error_also_catches_the_course_importers():
    with pytest.raises(labs.errors.PlatformError):
        raise courses.errors.PlatformError("a course folder changed during the import")


def test_every_apps_learner_errors_share_one_base_with_a_message_a_hint_and_a_status():
    for error in (
        courses.errors.CourseInvalid([]),
        labs.errors.SubmissionNotAllowed("no", "log in"),
        labs.errors.SubmissionLimitReached("no", "ask staff"),
    ):
        assert isinstance(error, core.errors.LearnerError)
        assert {"error", "problems", "hint"} <= set(error.as_dict())
        assert 400 <= error.http_status < 500


def test_the_sandbox_is_unavailable_is_ours_never_the_learners():
    assert issubclass(labs.errors.SandboxUnavailable, core.errors.PlatformError)
    assert not issubclass(labs.errors.SandboxUnavailable, core.errors.LearnerError)


def test_there_is_no_fallback_error_module_left():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("labs.sandbox.errors")
