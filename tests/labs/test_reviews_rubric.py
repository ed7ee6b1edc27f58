"""The `review:` block of lab.yaml: parsing, defaults and every problem kind."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

import pytest

from labs.errors import PlatformError
from labs.reviews.rubric import DEFAULT_CRITERIA, parse_review, parse_rubric, review_spec_for_lab


def test_it_parses_a_valid_rubric_in_order():
    criteria, problems = parse_rubric(
        [
            {"id": "readability", "title": "Readable code", "description": "Names say what.", "points": 5},
            {"id": "tests", "title": "Tests", "points": 2.5},
        ]
    )
    assert problems == []
    assert [(c.id, c.title, c.points) for c in criteria] == [
        ("readability", "Readable code", Decimal(5)),
        ("tests", "Tests", Decimal("2.5")),
    ]
    assert criteria[0].description == "Names say what."


def test_it_reports_duplicate_ids_naming_both_entries():
    criteria, problems = parse_rubric(
        [{"id": "a", "title": "A", "points": 1}, {"id": "a", "title": "Again", "points": 1}]
    )
    assert [c.title for c in criteria] == ["A"]
    assert problems == [
        "review.rubric[1].id: duplicate id 'a' (also review.rubric[0]); give each criterion its own id."
    ]


@pytest.mark.parametrize("points", [0, -3, Decimal("-0.5")])
def test_it_rejects_non_positive_points(points):
    _criteria, problems = parse_rubric([{"id": "a", "title": "A", "points": points}])
    assert problems == [f"review.rubric[0].points: must be greater than 0, got {points!r}."]


@pytest.mark.parametrize("points", [True, "five", None, 1.234, 5000])
def test_it_rejects_points_that_are_not_a_sensible_number(points):
    criteria, problems = parse_rubric([{"id": "a", "title": "A", "points": points}])
    assert criteria == []
    assert len(problems) == 1
    assert problems[0].startswith("review.rubric[0].points:")


@pytest.mark.parametrize("title", [None, "", "   ", 7])
def test_it_rejects_a_missing_title(title):
    entry = {"id": "a", "points": 1}
    if title is not None:
        entry["title"] = title
    _criteria, problems = parse_rubric([entry])
    assert problems == ["review.rubric[0].title: missing; every criterion needs a title the reviewer and learner read."]


@pytest.mark.parametrize("bad_id", [None, "", "Has Spaces", "-leading", "x" * 65])
def test_it_rejects_missing_or_malformed_ids(bad_id):
    entry = {"title": "A", "points": 1} if bad_id is None else {"id": bad_id, "title": "A", "points": 1}
    _criteria, problems = parse_rubric([entry])
    assert len(problems) == 1
    assert problems[0].startswith("review.rubric[0].id:")


def test_it_names_unknown_keys_so_typos_are_caught():
    _criteria, problems = parse_rubric([{"id": "a", "title": "A", "points": 1, "pionts": 2}])
    assert problems == ["review.rubric[0].pionts: unknown key; allowed keys are id, title, description, points."]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"id": "a"}, "must be a list of criteria, got a mapping"),
        ([], "is empty"),
        ("readability", "must be a list of criteria, got text"),
    ],
)
def test_it_rejects_a_rubric_that_is_not_a_list_of_criteria(raw, expected):
    criteria, problems = parse_rubric(raw)
    assert criteria == []
    assert expected in problems[0]


def test_every_problem_is_reported_at_once():
    _criteria, problems = parse_rubric(
        [
            {"id": "a", "points": 0},
            "oops",
            {"id": "b", "title": "B", "points": 1},
            {"id": "b", "title": "B2", "points": 1},
        ]
    )
    assert len(problems) == 4
    assert any("[0].title" in p for p in problems)
    assert any("[0].points" in p for p in problems)
    assert any(p.startswith("review.rubric[1]:") for p in problems)
    assert any("duplicate id 'b'" in p for p in problems)


def test_a_lab_without_a_review_block_gets_the_default_rubric_and_requires_approval():
    spec, problems = parse_review(None)
    assert problems == []
    assert spec.criteria == DEFAULT_CRITERIA
    assert [(c.title, c.points) for c in spec.criteria] == [("Overall quality", Decimal(10))]
    assert spec.required is True
    assert spec.is_default_rubric is True


def test_a_review_block_without_a_rubric_keeps_its_required_flag_and_the_default_rubric():
    spec, problems = parse_review({"required": False})
    assert problems == []
    assert spec.required is False
    assert spec.criteria == DEFAULT_CRITERIA


def test_parse_review_checks_required_and_unknown_keys():
    spec, problems = parse_review({"required": "yes please", "rubrik": []})
    assert "review.rubrik: unknown key; allowed keys are rubric, required, weight, min_autograde." in problems
    assert "review.required: must be true, false or optional, got 'yes please'." in problems
    assert spec.criteria == DEFAULT_CRITERIA


def test_parse_review_uses_the_instructors_rubric_and_sums_its_points():
    spec, problems = parse_review(
        {"required": True, "rubric": [{"id": "a", "title": "A", "points": 4}, {"id": "b", "title": "B", "points": 1.5}]}
    )
    assert problems == []
    assert [c.id for c in spec.criteria] == ["a", "b"]
    assert spec.max_total == Decimal("5.5")


def test_a_stored_lab_with_an_invalid_rubric_is_our_error_with_a_fix():
    lab = SimpleNamespace(pk=7, slug="quote", spec={"review": {"rubric": [{"id": "a", "points": 1}]}})
    with pytest.raises(
        PlatformError,
        match=r"lab 7 \(quote\) has an invalid review block: .*title: missing.*import the course again",
    ):
        review_spec_for_lab(lab)
