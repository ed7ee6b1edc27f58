"""Reader marks: the answers a learner opened and the items they ticked, kept per learner and lesson on the server
(logged in) and embedded in their lesson page; refused, with what is wrong, for anything else."""

import json

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from courses.models import LessonMark
from courses.services import learning
from tests.courses import factories

pytestmark = pytest.mark.django_db

# What the renderer writes for an ungraded quiz and a task list (the parts the marks rely on).
MARKABLE_HTML = (
    '<h2 id="check">Check</h2>'
    '<section class="quiz" data-quiz-key="check-yourself"><p class="quiz-progress"><span data-opened>0</span> of 3'
    " opened</p><ol>"
    + "".join(
        f'<li><details class="quiz-reveal" data-question="q{n}"><summary>Show the answer</summary>A{n}</details></li>'
        for n in (1, 2, 3)
    )
    + "</ol></section>"
    '<ul class="contains-task-list" data-checklist="1">'
    + "".join(f'<li class="task-list-item"><input type="checkbox" data-item="{i}"> step {i}</li>' for i in range(3))
    + "</ul>"
)


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def marks_url(lesson) -> str:
    return reverse("lesson-marks", args=[lesson.course.slug, lesson.unit.slug, lesson.slug])


def lesson_url(lesson) -> str:
    return reverse("lesson", args=[lesson.course.slug, lesson.unit.slug, lesson.slug])


def embedded_marks(body: str) -> dict:
    start = body.index('<script id="reader-marks" type="application/json">') + len(
        '<script id="reader-marks" type="application/json">'
    )
    return json.loads(body[start : body.index("</script>", start)])


@pytest.fixture
def lesson(db):
    course = factories.course_create(slug="ship")
    unit = factories.unit_create(course=course, position=1, slug="week-1")
    factories.lesson_create(unit=unit, position=1, slug="before")
    lesson = factories.lesson_create(unit=unit, position=2, slug="pinning", html=MARKABLE_HTML)
    factories.lesson_create(unit=unit, position=3, slug="after")
    return lesson


def test_a_learner_saves_opened_answers_and_ticks_and_finds_them_on_reload(lesson):
    learner = factories.user_create()
    client = logged_in(learner)
    assert client.post(marks_url(lesson), {"key": "quiz:check-yourself", "value": '["q3", "q1"]'}).status_code == 204
    assert client.post(marks_url(lesson), {"key": "checklist:1", "value": "[2, 0]"}).status_code == 204

    body = client.get(lesson_url(lesson)).content.decode()

    assert embedded_marks(body) == {"checklist:1": [0, 2], "quiz:check-yourself": ["q1", "q3"]}
    assert f'data-marks-url="{marks_url(lesson)}"' in body


def test_a_new_value_replaces_the_old_and_an_empty_list_forgets_the_key(lesson):
    learner = factories.user_create()
    client = logged_in(learner)
    client.post(marks_url(lesson), {"key": "quiz:check-yourself", "value": '["q1", "q2"]'})
    client.post(marks_url(lesson), {"key": "quiz:check-yourself", "value": '["q2"]'})
    assert LessonMark.objects.get(user=learner, lesson=lesson).value == ["q2"]  # closing q1 counts
    assert client.post(marks_url(lesson), {"key": "quiz:check-yourself", "value": "[]"}).status_code == 204
    assert not LessonMark.objects.exists()


def test_a_learner_never_sees_another_learners_marks(lesson):
    ada, grace = factories.user_create(), factories.user_create()
    logged_in(ada).post(marks_url(lesson), {"key": "checklist:1", "value": "[1]"})
    body = logged_in(grace).get(lesson_url(lesson)).content.decode()
    assert embedded_marks(body) == {}
    logged_in(grace).post(marks_url(lesson), {"key": "checklist:1", "value": "[0]"})
    assert LessonMark.objects.get(user=ada).value == [1]  # the same key is theirs alone


def test_an_outsider_is_refused_and_nothing_is_kept(lesson):
    response = Client().post(marks_url(lesson), {"key": "checklist:1", "value": "[1]"})
    assert response.status_code == 403
    assert "Log in" in response.json()["error"]
    assert not LessonMark.objects.exists()


def test_a_post_without_the_csrf_token_is_refused(lesson):
    client = Client(enforce_csrf_checks=True)
    client.force_login(factories.user_create())
    assert client.post(marks_url(lesson), {"key": "checklist:1", "value": "[1]"}).status_code == 403
    assert not LessonMark.objects.exists()


def test_the_csrf_token_of_the_page_lets_the_script_post(lesson):
    client = Client(enforce_csrf_checks=True)
    client.force_login(factories.user_create())
    body = client.get(lesson_url(lesson)).content.decode()
    token = body.split('<meta name="csrf-token" content="', 1)[1].split('"', 1)[0]
    response = client.post(marks_url(lesson), {"key": "checklist:1", "value": "[1]"}, headers={"X-CSRFToken": token})
    assert response.status_code == 204


def test_marks_on_a_lesson_that_does_not_exist_are_404(lesson):
    client = logged_in(factories.user_create())
    url = reverse("lesson-marks", args=["ship", "week-1", "no-such-lesson"])
    assert client.post(url, {"key": "checklist:1", "value": "[1]"}).status_code == 404
    assert client.get(marks_url(lesson)).status_code == 405


@pytest.mark.parametrize(
    ("key", "value", "error", "hint"),
    [
        ("progress", "[1]", "'progress' is not a mark key.", '"quiz:<quiz key>" or "checklist:<number>"'),
        ("quiz:Check Yourself", '["q1"]', "is not a mark key", "checklist:<number>"),
        ("checklist:0", "[1]", "'checklist:0' is not a mark key.", "checklist:<number>"),
        ("checklist:1", "1", "The value of checklist:1 is not a list.", "JSON list"),
        ("checklist:1", "[1", "The value is not JSON.", "JSON list"),
        ("checklist:1", '["1"]', "holds '1', which is not a checklist item index", "whole numbers from 0 to 9999"),
        ("checklist:1", "[true]", "holds True, which is not a checklist item index", "whole numbers"),
        ("checklist:1", "[-1]", "holds -1", "whole numbers"),
        ("checklist:1", "[10000]", "holds 10000", "whole numbers"),
        ("quiz:check-yourself", '["answer"]', "holds 'answer', which is not a question id", 'data-question="q2"'),
        ("quiz:check-yourself", "[1]", "holds 1, which is not a question id", "Question ids"),
        ("checklist:1", json.dumps(list(range(201))), "has 201 items; at most 200 are kept", "only the ids"),
        ("quiz:other-quiz", '["q1"]', "This lesson has no quiz 'other-quiz'.", "Reload the page"),
        ("checklist:2", "[0]", "This lesson has no checklist 2.", "Reload the page"),
        ("checklist:1", "[" * 2000 + "]" * 2000, "The value is not JSON.", "JSON list"),  # nested past recursion
        ("checklist:1", "[" + "0," * 3000 + "0]", "above the limit of 4096", "flat JSON list"),
    ],
)
def test_bad_keys_and_values_are_refused_with_what_is_wrong(lesson, key, value, error, hint):
    response = logged_in(factories.user_create()).post(marks_url(lesson), {"key": key, "value": value})
    assert response.status_code == 400
    data = response.json()
    assert error in data["error"], data
    assert hint in data["hint"], data
    assert not LessonMark.objects.exists()


def test_a_learner_keeps_at_most_64_marks_per_lesson(lesson):
    lesson.html = "".join(f'<ul class="contains-task-list" data-checklist="{n}"></ul>' for n in range(1, 66))
    lesson.save(update_fields=["html"])
    learner = factories.user_create()
    for n in range(1, 65):
        learning.lesson_mark_set(user=learner, lesson=lesson, key=f"checklist:{n}", value=[0])
    with pytest.raises(learning.LessonMarkError, match="already keeps 64 marks") as refused:
        learning.lesson_mark_set(user=learner, lesson=lesson, key="checklist:65", value=[0])
    assert "Clear the answers or ticks" in refused.value.hint
    # Changing a kept mark is still fine, and other learners have their own 64.
    learning.lesson_mark_set(user=learner, lesson=lesson, key="checklist:64", value=[1, 2])
    learning.lesson_mark_set(user=factories.user_create(), lesson=lesson, key="checklist:65", value=[0])
    assert LessonMark.objects.filter(user=learner).count() == 64


def test_the_anonymous_page_holds_no_marks_and_no_one_to_post_for(client, lesson):
    logged_in(factories.user_create()).post(marks_url(lesson), {"key": "checklist:1", "value": "[1]"})
    body = client.get(lesson_url(lesson)).content.decode()
    assert "reader-marks" not in body
    assert "data-marks-url" not in body
    assert f'data-marks-key="shipshape-marks:{lesson_url(lesson)}"' in body  # the browser keeps their state


def test_the_cached_anonymous_page_never_holds_a_learners_marks(client, lesson):
    cache.clear()
    lesson.course.content_version, lesson.course.imported_at = "abc", timezone.now()
    lesson.course.save()
    learner = factories.user_create()
    learner_client = logged_in(learner)
    learner_client.post(marks_url(lesson), {"key": "checklist:1", "value": "[2]"})
    assert embedded_marks(learner_client.get(lesson_url(lesson)).content.decode()) == {"checklist:1": [2]}
    first = client.get(lesson_url(lesson)).content
    second = client.get(lesson_url(lesson)).content  # from the cache
    assert first == second
    assert b"reader-marks" not in second
    cache.clear()


def test_the_marks_cost_the_learners_page_no_query_of_their_own_whatever_their_number(
    lesson, django_assert_num_queries
):
    learner = factories.user_create()
    client = logged_in(learner)
    client.get(lesson_url(lesson))  # warm the session
    # session, user, course version, lesson, enrollment, previous, next, progress and marks (one query); the
    # header's review-queue link and unread count come from the shared cache
    with django_assert_num_queries(7):
        client.get(lesson_url(lesson))
    client.post(marks_url(lesson), {"key": "checklist:1", "value": "[0, 1, 2]"})
    client.post(marks_url(lesson), {"key": "quiz:check-yourself", "value": '["q1", "q2", "q3"]'})
    with django_assert_num_queries(7):
        body = client.get(lesson_url(lesson)).content.decode()
    assert len(embedded_marks(body)) == 2


def test_a_lesson_with_nothing_to_mark_costs_no_query_for_marks(django_assert_num_queries):
    course = factories.course_with_lessons_create(units=1, lessons_per_unit=3)
    lesson = course.lessons.get(position=2)
    client = logged_in(factories.user_create())
    client.get(lesson_url(lesson))
    with django_assert_num_queries(7):  # as above: the progress query reads no marks
        body = client.get(lesson_url(lesson)).content.decode()
    assert "reader-marks" not in body and "data-marks-url" not in body
