import re
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from courses.models import Course, Enrollment, Lesson, LessonProgress, QuizAttempt
from labs.models import Lab
from tests.courses import factories

pytestmark = pytest.mark.django_db


def lesson_url(lesson) -> str:
    return reverse("lesson", args=[lesson.course.slug, lesson.unit.slug, lesson.slug])


def complete_url(lesson) -> str:
    return reverse("lesson-complete", args=[lesson.course.slug, lesson.unit.slug, lesson.slug])


def quiz_url(quiz) -> str:
    lesson = quiz.lesson
    return reverse("quiz-submit", args=[lesson.course.slug, lesson.unit.slug, lesson.slug, quiz.key])


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# Catalog and course page


def test_catalog_lists_courses_with_summary_for_anonymous_visitors(client):
    factories.course_with_lessons_create(title="Shipping Production Systems", summary="Ship it, calmly.")
    response = client.get("/")
    assert response.status_code == 200
    assert b"Shipping Production Systems" in response.content
    assert b"Ship it, calmly." in response.content
    assert b"done (" not in response.content


def test_catalog_shows_progress_when_logged_in():
    course = factories.course_with_lessons_create(units=1, lessons_per_unit=4)
    user = factories.user_create()
    LessonProgress.objects.create(user=user, lesson=course.lessons.first())
    response = logged_in(user).get("/")
    assert "1 of 4 done (25%)" in response.content.decode()


def test_course_page_lists_units_with_their_label_and_lessons(client):
    course = factories.course_with_lessons_create(units=2, lessons_per_unit=2, unit_label="Module")
    lesson = course.lessons.first()
    lesson.estimated_minutes = 35
    lesson.save()
    response = client.get(reverse("course", args=[course.slug]))
    body = response.content.decode()
    assert response.status_code == 200
    assert "Module 1" in body and "Module 2" in body
    assert "35 min" in body
    assert lesson_url(lesson) in body
    assert "Sign up to track progress" in body


def test_course_page_shows_ticks_and_progress_per_unit_and_course():
    course = factories.course_with_lessons_create(units=2, lessons_per_unit=2)
    user = factories.user_create()
    LessonProgress.objects.create(user=user, lesson=course.lessons.order_by("unit__position", "position").first())
    body = logged_in(user).get(reverse("course", args=[course.slug])).content.decode()
    assert "1 of 4</strong> lessons (25%)" in body
    assert "1 of 2 done" in body and "0 of 2 done" in body
    assert body.count("(completed)") == 1


def test_course_page_takes_constant_queries(django_assert_max_num_queries):
    small = factories.course_with_lessons_create(units=1, lessons_per_unit=2)
    big = factories.course_with_lessons_create(units=5, lessons_per_unit=10)
    client = logged_in(factories.user_create())
    client.get(reverse("course", args=[small.slug]))  # warm the session
    counts = []
    for course in (small, big):
        with django_assert_max_num_queries(20) as captured:
            client.get(reverse("course", args=[course.slug]))
        counts.append(len(captured.captured_queries))
    assert counts[0] == counts[1]


def test_course_page_lists_labs_under_their_unit(client):
    course = factories.course_with_lessons_create(units=1, lessons_per_unit=1)
    Lab.objects.create(
        course=course,
        unit=course.units.get(),
        slug="quote-service",
        title="The quote service",
        source_path="unit-1/quote-service",
        spec={},
        content_hash="h",
        grader_digest="g",
    )
    body = client.get(reverse("course", args=[course.slug])).content.decode()
    assert "The quote service" in body
    assert reverse("lab_detail", args=[course.slug, "quote-service"]) in body


def test_unknown_course_is_404(client):
    response = client.get("/courses/no-such-course/")
    assert response.status_code == 404
    assert b"Page not found" in response.content


def test_enroll_button_enrolls_the_user_as_learner():
    course = factories.course_with_lessons_create()
    user = factories.user_create()
    client = logged_in(user)
    response = client.post(reverse("course-enroll", args=[course.slug]))
    assert response.status_code == 302
    assert Enrollment.objects.get(user=user, course=course).role == Enrollment.Role.LEARNER
    assert "Enrolled as learner" in client.get(reverse("course", args=[course.slug])).content.decode()


def test_enroll_redirects_anonymous_users_to_login(client):
    course = factories.course_with_lessons_create()
    response = client.post(reverse("course-enroll", args=[course.slug]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert not Enrollment.objects.exists()


# Lesson page


@pytest.fixture
def rich_lesson(db):
    course = factories.course_create(unit_label="Week", slug="ship")
    unit1 = factories.unit_create(course=course, position=1, title="Containers")
    unit2 = factories.unit_create(course=course, position=2, title="Deployment")
    first = factories.lesson_create(unit=unit1, position=1, title="First lesson")
    lesson = factories.lesson_create(
        unit=unit1,
        position=2,
        slug="reproducible-envs",
        title="Reproducible environments",
        tagline="Same inputs, same image.",
        objective="Build an image twice and get the same digest.",
        deliverable="A pinned Dockerfile.",
        outcomes=["Pin a base image by digest"],
        prerequisites=["A shell"],
        estimated_minutes=40,
        references=[
            {"kind": "paper", "title": "A paper", "url": "https://example.org/paper"},
            {"kind": "official-doc", "title": "Dockerfile reference", "url": "https://example.org/docs"},
            {"kind": "official-doc", "title": "Compose reference", "url": "https://example.org/compose"},
        ],
        html='<h2 id="mental-model">Mental model</h2><p>Images are <strong>values</strong>.</p>',
        toc=[{"level": 2, "id": "mental-model", "text": "Mental model"}],
    )
    after = factories.lesson_create(unit=unit2, position=1, title="Next unit lesson")
    return {"course": course, "first": first, "lesson": lesson, "after": after}


def test_lesson_page_shows_header_toc_body_and_references(client, rich_lesson):
    response = client.get(lesson_url(rich_lesson["lesson"]))
    body = response.content.decode()
    assert response.status_code == 200
    for text in (
        "Week 1",
        "Reproducible environments",
        "Same inputs, same image.",
        "Build an image twice and get the same digest.",
        "A pinned Dockerfile.",
        "Pin a base image by digest",
        "A shell",
        "About 40 minutes",
        '<a href="#mental-model">Mental model</a>',
        "Images are <strong>values</strong>.",
    ):
        assert text in body, text
    # Grouped by kind, official docs first, each group listing its references.
    docs, papers = body.index("Official documentation"), body.index("Papers")
    assert docs < body.index("Dockerfile reference") < body.index("Compose reference") < papers


def test_lesson_page_links_previous_and_next_across_units(client, rich_lesson):
    body = client.get(lesson_url(rich_lesson["lesson"])).content.decode()
    assert f'rel="prev" href="{lesson_url(rich_lesson["first"])}"' in body
    assert f'rel="next" href="{lesson_url(rich_lesson["after"])}"' in body
    assert "Next · Week 2" in body
    first_body = client.get(lesson_url(rich_lesson["first"])).content.decode()
    assert 'rel="prev"' not in first_body


def test_lesson_page_is_public_and_invites_to_log_in(client, rich_lesson):
    body = client.get(lesson_url(rich_lesson["lesson"])).content.decode()
    assert "to track your progress" in body
    assert "Mark complete" not in body


@pytest.mark.parametrize(
    "path",
    ["/courses/ship/unit-1/nope/", "/courses/ship/nope/reproducible-envs/", "/courses/nope/unit-1/reproducible-envs/"],
)
def test_unknown_lesson_slugs_are_404(client, rich_lesson, path):
    assert client.get(path).status_code == 404


def test_lesson_page_queries_stay_constant_as_lessons_grow(django_assert_num_queries):
    counts = {}
    user = factories.user_create()
    client = logged_in(user)
    for lessons in (3, 50):
        course = factories.course_with_lessons_create(units=1, lessons_per_unit=lessons)
        lesson = course.lessons.get(position=2)
        quiz = factories.graded_quiz_create(lesson=lesson)
        QuizAttempt.objects.create(quiz=quiz, user=user, answers={}, score=0, max_score=2)
        LessonProgress.objects.create(user=user, lesson=lesson)
        url = lesson_url(lesson)
        client.get(url)  # warm the session
        # session, user, course version, lesson, enrollment, graded quizzes, attempts, previous, next, progress (the
        # header's review-queue link and unread count: the shared cache)
        with django_assert_num_queries(9) as captured:
            response = client.get(url)
        assert response.status_code == 200
        counts[lessons] = len(captured.captured_queries)
    assert counts[3] == counts[50]


def test_lesson_page_for_anonymous_readers_takes_few_queries(client, django_assert_num_queries):
    course = factories.course_with_lessons_create(units=2, lessons_per_unit=25)
    url = lesson_url(course.lessons.get(unit__position=2, position=3))
    with django_assert_num_queries(4):  # course version (cache check), lesson, previous, next
        assert client.get(url).status_code == 200


@pytest.fixture
def imported_lesson(db):
    cache.clear()
    course = factories.course_with_lessons_create(
        units=2, lessons_per_unit=3, content_version="abc123", imported_at=timezone.now()
    )
    yield course.lessons.get(unit__position=1, position=2)
    cache.clear()


def test_anonymous_lesson_pages_of_imported_courses_are_served_from_the_cache(
    client, imported_lesson, django_assert_num_queries
):
    url = lesson_url(imported_lesson)
    first = client.get(url)
    with django_assert_num_queries(1):  # the course version only
        second = client.get(url)
    assert second.status_code == 200
    assert second.content == first.content
    assert imported_lesson.title in second.content.decode()


def test_a_new_import_is_never_hidden_by_the_cache(client, imported_lesson):
    url = lesson_url(imported_lesson)
    client.get(url)
    Lesson.objects.filter(pk=imported_lesson.pk).update(title="Retitled by the new import")
    Course.objects.filter(pk=imported_lesson.course_id).update(imported_at=timezone.now() + timedelta(seconds=1))
    assert "Retitled by the new import" in client.get(url).content.decode()


def test_logged_in_pages_of_imported_courses_reuse_the_neighbours(imported_lesson, django_assert_num_queries):
    client = logged_in(factories.user_create())
    url = lesson_url(imported_lesson)
    client.get(url)
    # session, user, course version (the shell's key), progress: the lesson row and its previous and next come with
    # the shell, the unused enrollment is no longer read, and the header's facts come from the shared cache
    with django_assert_num_queries(4):
        body = client.get(url).content.decode()
    assert 'rel="prev"' in body and 'rel="next"' in body


def test_pages_with_a_session_or_messages_are_not_served_from_the_anonymous_cache(client, imported_lesson):
    url = lesson_url(imported_lesson)
    client.get(url)
    # Changed behind the cache's back (no new import), so only a freshly rendered page shows it.
    Lesson.objects.filter(pk=imported_lesson.pk).update(title="Fresh title")
    assert "Fresh title" not in client.get(url).content.decode()
    # A logged-in reader's page is built from its own shell (tests/courses/test_lesson_page_fragments.py).
    assert "Fresh title" in logged_in(factories.user_create()).get(url).content.decode()
    client.cookies["messages"] = "pending"
    assert "Fresh title" in client.get(url).content.decode()


# Progress


def test_mark_complete_without_js_posts_and_redirects_back(rich_lesson):
    user = factories.user_create()
    client = logged_in(user)
    lesson = rich_lesson["lesson"]
    response = client.post(complete_url(lesson), {"completed": "1"})
    assert response.status_code == 302
    assert response["Location"] == lesson_url(lesson) + "#lesson-progress"
    assert LessonProgress.objects.filter(user=user, lesson=lesson).exists()
    assert "You completed this lesson" in client.get(lesson_url(lesson)).content.decode()


def test_mark_complete_with_htmx_returns_the_fragment(rich_lesson):
    user = factories.user_create()
    client = logged_in(user)
    lesson = rich_lesson["lesson"]
    response = client.post(complete_url(lesson), {"completed": "1"}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div class="lesson-progress" id="lesson-progress">')
    assert "<html" not in body
    assert "Mark as not complete" in body
    response = client.post(complete_url(lesson), {"completed": "0"}, headers={"HX-Request": "true"})
    assert "Mark complete" in response.content.decode()
    assert not LessonProgress.objects.filter(user=user).exists()


def test_mark_complete_twice_keeps_one_row(rich_lesson):
    user = factories.user_create()
    client = logged_in(user)
    client.post(complete_url(rich_lesson["lesson"]))
    client.post(complete_url(rich_lesson["lesson"]))
    assert LessonProgress.objects.filter(user=user).count() == 1


def test_mark_complete_sends_anonymous_users_to_login(client, rich_lesson):
    lesson = rich_lesson["lesson"]
    response = client.post(complete_url(lesson))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    response = client.post(complete_url(lesson), headers={"HX-Request": "true"})
    assert response["HX-Redirect"].startswith(reverse("login"))
    assert not LessonProgress.objects.exists()


def test_mark_complete_rejects_get(rich_lesson):
    client = logged_in(factories.user_create())
    assert client.get(complete_url(rich_lesson["lesson"])).status_code == 405


def test_posts_without_csrf_token_are_refused(rich_lesson):
    user = factories.user_create()
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    lesson = rich_lesson["lesson"]
    quiz = factories.graded_quiz_create(lesson=lesson)
    assert client.post(complete_url(lesson)).status_code == 403
    assert client.post(quiz_url(quiz), {"q0": "1", "q1": ["0", "2"]}).status_code == 403
    assert client.post(reverse("course-enroll", args=[lesson.course.slug])).status_code == 403
    assert not LessonProgress.objects.exists()
    assert not QuizAttempt.objects.exists()


def test_csrf_token_from_the_page_lets_htmx_post(rich_lesson):
    user = factories.user_create()
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    lesson = rich_lesson["lesson"]
    page = client.get(lesson_url(lesson)).content.decode()
    token = re.search(r'<meta name="csrf-token" content="([^"]+)">', page).group(1)
    assert f'hx-headers=\'{{"X-CSRFToken": "{token}"}}\'' in page
    response = client.post(complete_url(lesson), headers={"HX-Request": "true", "X-CSRFToken": token})
    assert response.status_code == 200
    assert LessonProgress.objects.filter(user=user, lesson=lesson).exists()


# Graded quizzes


@pytest.fixture
def quiz(rich_lesson):
    return factories.graded_quiz_create(lesson=rich_lesson["lesson"], key="final", max_attempts=2)


def test_graded_quiz_form_replaces_the_placeholder_without_answers(quiz):
    user = factories.user_create()
    body = logged_in(user).get(lesson_url(quiz.lesson)).content.decode()
    assert "graded-quiz-slot" not in body
    assert f'action="{quiz_url(quiz)}"' in body
    assert 'type="radio" name="q0" value="1"' in body
    assert 'type="checkbox" name="q1" value="2"' in body
    assert '"correct"' not in body and "data-correct" not in body
    assert "Only a digest names exactly one image." not in body


def test_graded_quiz_asks_anonymous_readers_to_log_in(client, quiz):
    body = client.get(lesson_url(quiz.lesson)).content.decode()
    assert "to take this quiz" in body
    assert f'action="{quiz_url(quiz)}"' not in body


def test_anonymous_quiz_post_redirects_to_login(client, quiz):
    response = client.post(quiz_url(quiz), {"q0": "1", "q1": ["0", "2"]})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert not QuizAttempt.objects.exists()


def test_quiz_submission_scores_and_then_shows_explanations(quiz):
    user = factories.user_create()
    client = logged_in(user)
    response = client.post(quiz_url(quiz), {"q0": "1", "q1": ["0"]})
    assert response.status_code == 302
    assert response["Location"] == lesson_url(quiz.lesson) + "#quiz-final"
    body = client.get(lesson_url(quiz.lesson)).content.decode()
    assert "Your score: 1 / 2" in body
    assert "Only a digest names exactly one image." in body
    assert "1 attempt left" in body
    attempt = QuizAttempt.objects.get(user=user)
    assert attempt.answers == {"0": [1], "1": [0]}
    assert Enrollment.objects.filter(user=user, course=quiz.lesson.course, role="learner").exists()


def test_quiz_submission_with_htmx_returns_the_scored_fragment(quiz):
    client = logged_in(factories.user_create())
    response = client.post(quiz_url(quiz), {"q0": "1", "q1": ["0", "2"]}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert body.lstrip().startswith('<section class="graded-quiz card" id="quiz-final"')
    assert "Your score: 2 / 2" in body
    assert "Lock files record exact versions and hashes." in body


def test_quiz_attempt_limit_is_enforced_and_explained(quiz):
    user = factories.user_create()
    client = logged_in(user)
    for _ in range(2):
        client.post(quiz_url(quiz), {"q0": "0", "q1": ["1"]})
    response = client.post(quiz_url(quiz), {"q0": "1", "q1": ["0", "2"]}, follow=True)
    body = response.content.decode()
    assert "You have used all 2 attempts" in body
    assert "Best score: 1 / 2" not in body  # both attempts scored 0
    assert "Your score: 0 / 2" in body
    assert "No attempts left." in body
    assert "Submit answers" not in body
    assert QuizAttempt.objects.filter(user=user).count() == 2


def test_quiz_shows_the_best_score_after_several_attempts(quiz):
    client = logged_in(factories.user_create())
    client.post(quiz_url(quiz), {"q0": "1", "q1": ["0", "2"]})
    client.post(quiz_url(quiz), {"q0": "0", "q1": ["0"]})
    body = client.get(lesson_url(quiz.lesson)).content.decode()
    assert "Your score: 0 / 2" in body
    assert "Best score: 2 / 2" in body


def test_quiz_submission_with_a_missing_answer_shows_the_problem(quiz):
    client = logged_in(factories.user_create())
    response = client.post(quiz_url(quiz), {"q0": "1"}, headers={"HX-Request": "true"})
    assert "Question 2 has no answer." in response.content.decode()
    assert not QuizAttempt.objects.exists()


def test_quiz_texts_use_sanitised_html_when_present_and_escape_plain_text(rich_lesson):
    questions = [
        {
            "prompt": "Is <b>this</b> bold?",
            "choices": [{"text": "<i>no</i>", "correct": True}, {"text": "x", "html": "<code>x</code>"}],
        },
        {"prompt": "p", "prompt_html": "Run <code>uv sync</code>?", "choices": [{"text": "yes", "correct": True}]},
    ]
    quiz = factories.graded_quiz_create(lesson=rich_lesson["lesson"], key="html", questions=questions)
    body = logged_in(factories.user_create()).get(lesson_url(quiz.lesson)).content.decode()
    assert "Is &lt;b&gt;this&lt;/b&gt; bold?" in body
    assert "&lt;i&gt;no&lt;/i&gt;" in body
    assert "<span><code>x</code></span>" in body
    assert "Run <code>uv sync</code>?" in body


def test_ungraded_quiz_has_no_submission_endpoint(quiz):
    quiz.graded = False
    quiz.save()
    client = logged_in(factories.user_create())
    assert client.post(quiz_url(quiz), {"q0": "1"}).status_code == 404


# Accounts


def test_signup_creates_the_account_logs_in_and_follows_next(client, rich_lesson):
    target = lesson_url(rich_lesson["lesson"])
    response = client.post(
        reverse("signup"),
        {
            "username": "ada",
            "email": "ada@example.com",
            "password1": factories.PASSWORD,
            "password2": factories.PASSWORD,
            "next": target,
        },
    )
    assert response.status_code == 302
    assert response["Location"] == target
    assert "Mark complete" in client.get(target).content.decode()


def test_signup_ignores_an_offsite_next(client):
    response = client.post(
        reverse("signup"),
        {
            "username": "ada",
            "email": "ada@example.com",
            "password1": factories.PASSWORD,
            "password2": factories.PASSWORD,
            "next": "https://evil.example/",
        },
    )
    assert response["Location"] == reverse("catalog")


def test_signup_shows_form_errors(client):
    response = client.post(reverse("signup"), {"username": "ada", "password1": "x", "password2": "y"})
    assert response.status_code == 200
    assert "errorlist" in response.content.decode()


def test_login_and_logout(client):
    factories.user_create(username="grace")
    response = client.post(reverse("login"), {"username": "grace", "password": factories.PASSWORD})
    assert response.status_code == 302
    assert "Log out" in client.get("/").content.decode()
    assert client.get(reverse("logout")).status_code == 405  # logging out is a POST
    client.post(reverse("logout"))
    assert "Log in" in client.get("/").content.decode()


def test_pages_carry_theme_toggle_skip_link_and_local_assets(client, rich_lesson):
    body = client.get(lesson_url(rich_lesson["lesson"])).content.decode()
    assert 'href="#main"' in body and 'id="main"' in body
    assert 'id="theme-toggle"' in body
    assert "/static/courses/vendor/htmx/htmx.min.js" in body
    assert not re.search(r'(src|href)="(https?:)?//', body.split("References")[0])


# Unit labels and tracks, second lines, reference descriptions, reflection


@pytest.fixture
def labelled_course(db):
    """A course whose parts are called differently: a Week, then an Essay on an advanced track."""
    course = factories.course_create(slug="mixed", unit_label="Week")
    week = factories.unit_create(course=course, position=1, slug="basics", title="Basics")
    essay = factories.unit_create(course=course, position=2, slug="on-failure", title="On failure")
    essay.label, essay.track, essay.number = "Essay", "Advanced mastery", 3
    essay.save()
    first = factories.lesson_create(unit=week, position=1, slug="first", title="First steps")
    reading = factories.lesson_create(
        unit=essay,
        position=1,
        slug="reading",
        title="Reading a failure",
        objective="Explain one outage end to end.",
        objective_detail="From the first alert to the last fix.",
        deliverable="A one-page postmortem.",
        deliverable_detail="Blameless, with a timeline.",
        reflection="Which signal would have warned you first?",
        references=[
            {
                "kind": "article",
                "title": "Reading postmortems",
                "url": "https://example.org/postmortems",
                "description": "How to read one for its causes, not its blame.",
            }
        ],
    )
    lab = Lab.objects.create(
        course=course,
        unit=essay,
        slug="outage-lab",
        title="The outage lab",
        source_path="on-failure/outage-lab",
        spec={},
        content_hash="h",
        grader_digest="g",
    )
    return {"course": course, "first": first, "reading": reading, "lab": lab}


def test_the_lesson_header_and_breadcrumb_name_the_unit_by_its_own_label_and_track(client, labelled_course):
    body = client.get(lesson_url(labelled_course["reading"])).content.decode()
    assert '<span class="unit-track">Advanced mastery</span> · Essay 3 · On failure' in body
    assert 'href="/courses/mixed/#unit-on-failure">Advanced mastery · Essay 3</a>' in body
    assert "Week 3" not in body


def test_the_pager_names_the_other_units_by_their_own_labels(client, labelled_course):
    first = client.get(lesson_url(labelled_course["first"])).content.decode()
    assert "Next · Advanced mastery · Essay 3" in first
    reading = client.get(lesson_url(labelled_course["reading"])).content.decode()
    assert "Previous · Week 1" in reading


def test_the_course_outline_names_each_unit_by_its_label(client, labelled_course):
    body = client.get(reverse("course", args=["mixed"])).content.decode()
    assert '<span class="unit-label">Week 1</span>Basics' in body
    assert '<span class="unit-label">Advanced mastery · Essay 3</span>On failure' in body


def test_the_lab_page_names_its_unit_by_its_label(client, labelled_course):
    body = client.get(reverse("lab_detail", args=["mixed", "outage-lab"])).content.decode()
    assert "Advanced mastery · Essay 3 · On failure · Lab" in body


def test_the_lesson_header_shows_the_second_lines_under_objective_and_deliverable(client, labelled_course):
    body = client.get(lesson_url(labelled_course["reading"])).content.decode()
    assert (
        '<dd>Explain one outage end to end.<span class="fact-detail">From the first alert to the last fix.</span></dd>'
        in body
    )
    assert '<dd>A one-page postmortem.<span class="fact-detail">Blameless, with a timeline.</span></dd>' in body


def test_a_reference_shows_its_description_under_its_link(client, labelled_course):
    body = client.get(lesson_url(labelled_course["reading"])).content.decode()
    link = body.index(">Reading postmortems</a>")
    assert body.index('<p class="reference-description">How to read one for its causes, not its blame.</p>') > link


def test_the_reflection_closes_the_lesson_before_the_progress_with_the_artefact(client, labelled_course):
    body = client.get(lesson_url(labelled_course["reading"])).content.decode()
    reflection = body.index('<h2 id="reflection-title">Reflection</h2>')
    assert body.index("Which signal would have warned you first?") > reflection
    assert body.index("<strong>Artefact:</strong> A one-page postmortem.") > reflection
    assert body.index('id="lesson-progress"') > reflection > body.index('class="lesson-body')
    assert "Reflection</h2>" not in client.get(lesson_url(labelled_course["first"])).content.decode()


def test_texts_of_the_header_and_reflection_are_escaped(client, labelled_course):
    reading = labelled_course["reading"]
    reading.reflection = "<script>alert(1)</script>"
    reading.objective_detail = "<b>bold</b>"
    reading.save()
    body = client.get(lesson_url(reading)).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "<script>alert(1)" not in body
    assert "&lt;b&gt;bold&lt;/b&gt;" in body


def test_the_header_shows_the_front_matter_as_rendered_at_import(client, labelled_course):
    reading = labelled_course["reading"]
    reading.tagline = "Read *slowly*"
    reading.outcomes = ["Replace `latest`"]
    reading.prerequisites = ["The [first lesson](../basics/01-first.md)"]
    reading.header_html = {
        "tagline": "Read <em>slowly</em>",
        "objective": "Explain <code>one</code> outage.",
        "objective_detail": "From <strong>alert</strong> to fix.",
        "deliverable": "A postmortem",
        "deliverable_detail": "Blameless",
        "reflection": 'Which <span class="math math-inline">P(y|x)</span>?\nAnd then?',
        "outcomes": ["Replace <code>latest</code>"],
        "prerequisites": ['The <a href="/courses/mixed/basics/first/">first lesson</a>'],
    }
    reading.references[0]["description_html"] = "For its <em>causes</em>."
    reading.save()

    body = client.get(lesson_url(reading)).content.decode()

    assert '<p class="tagline">Read <em>slowly</em></p>' in body
    assert (
        '<dd>Explain <code>one</code> outage.<span class="fact-detail">From <strong>alert</strong> to fix.</span>'
        in body
    )
    assert "<li>Replace <code>latest</code></li>" in body and "`latest`" not in body
    assert '<li>The <a href="/courses/mixed/basics/first/">first lesson</a></li>' in body
    assert '<p class="reference-description">For its <em>causes</em>.</p>' in body
    # The reflection keeps its line breaks; math.js typesets every .math on the page, the header's too.
    assert 'Which <span class="math math-inline">P(y|x)</span>?<br>And then?' in body
    assert "<strong>Artefact:</strong> A postmortem</p>" in body


def test_a_row_imported_before_header_html_shows_its_plain_text_escaped(client, labelled_course):
    reading = labelled_course["reading"]
    reading.outcomes = ["Replace `latest` & <em>pin</em>"]
    reading.save()
    assert reading.header_html == {}

    body = client.get(lesson_url(reading)).content.decode()

    assert "<li>Replace `latest` &amp; &lt;em&gt;pin&lt;/em&gt;</li>" in body


def test_unit_labels_cost_no_query_on_the_lesson_and_course_pages(
    client, labelled_course, django_assert_num_queries, django_assert_max_num_queries
):
    with django_assert_num_queries(4):  # course version (cache check), lesson, previous, next
        client.get(lesson_url(labelled_course["reading"]))
    big = factories.course_with_lessons_create(units=6, lessons_per_unit=2, unit_label="Module")
    big.units.filter(position__gt=3).update(label="Chapter", track="Deep dives")
    counts = []
    for slug in ("mixed", big.slug):
        with django_assert_max_num_queries(10) as captured:
            response = client.get(reverse("course", args=[slug]))
        counts.append(len(captured.captured_queries))
    assert "Deep dives · Chapter 6" in response.content.decode()
    assert counts[0] == counts[1]
