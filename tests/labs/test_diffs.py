"""Diffs between two revisions: file statuses, line numbers, notebooks by cell, and escaping."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
from django.template.loader import render_to_string

from labs.reviews.diffs import notebook_text, revisions_diff

from .factories import make_course, make_lab, make_user
from .test_reviews import make_revision

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def root(settings, tmp_path):
    settings.SUBMISSIONS_ROOT = tmp_path / "submissions"
    settings.DATA_DIR = tmp_path / "data"


@pytest.fixture
def pair():
    lab = make_lab(course=make_course())
    learner = make_user()

    def make(old_files: dict[str, bytes], new_files: dict[str, bytes]):
        old = make_revision(lab=lab, user=learner, files=old_files)
        new = make_revision(lab=lab, user=learner, files=new_files)
        return {d.path: d for d in revisions_diff(old=old, new=new)}

    return make


def kinds(diff) -> list[tuple[str, int | None, int | None]]:
    return [(line.kind, line.old_number, line.new_number) for line in diff.lines]


def test_it_tells_added_deleted_modified_and_unchanged_files_apart(pair):
    diffs = pair(
        {"service.py": b"a\nb\n", "old.py": b"gone\n", "same.py": b"x\n"},
        {"service.py": b"a\nc\n", "new.py": b"fresh\n", "same.py": b"x\n"},
    )
    assert {path: d.status for path, d in diffs.items()} == {
        "service.py": "modified",
        "new.py": "added",
        "same.py": "unchanged",
        "old.py": "deleted",
    }
    assert kinds(diffs["new.py"]) == [("add", None, 1)]
    assert kinds(diffs["old.py"]) == [("delete", 1, None)]
    assert diffs["same.py"].lines == []
    assert kinds(diffs["service.py"]) == [("context", 1, 1), ("delete", 2, None), ("add", None, 2)]


def test_it_numbers_lines_on_both_sides_and_skips_long_unchanged_runs(pair):
    old = "".join(f"line {n}\n" for n in range(1, 21)).encode()
    new = old.replace(b"line 10\n", b"line ten\nline ten and a half\n")
    diff = pair({"service.py": old}, {"service.py": new})["service.py"]
    assert kinds(diff) == [
        ("skip", None, None),
        *[("context", n, n) for n in (7, 8, 9)],
        ("delete", 10, None),
        ("add", None, 10),
        ("add", None, 11),
        *[("context", n, n + 1) for n in (11, 12, 13)],
        ("skip", None, None),
    ]
    assert str(diff.lines[0].html) == "… 6 unchanged lines"
    assert str(diff.lines[-1].html) == "… 7 unchanged lines"
    assert (diff.added, diff.deleted) == (2, 1)


def test_binary_files_are_not_compared(pair):
    diffs = pair({"service.py": b"a\n", "data.py": b"\x00\x01"}, {"service.py": b"a\n", "data.py": b"\x00\x02"})
    assert diffs["data.py"].status == "binary"
    assert diffs["data.py"].lines == []


def notebook(*cells: tuple[str, str], outputs: str = "") -> bytes:
    return json.dumps(
        {
            "cells": [
                {"cell_type": kind, "source": source.splitlines(keepends=True), "outputs": [{"text": outputs}]}
                for kind, source in cells
            ],
            "metadata": {},
            "nbformat": 4,
        },
        indent=1,
    ).encode()


def test_notebooks_are_compared_cell_by_cell_without_their_outputs(pair):
    old = notebook(("markdown", "# Title"), ("code", "x = 1\nprint(x)"), outputs="1")
    new = notebook(("markdown", "# Title"), ("code", "x = 2\nprint(x)"), outputs="2")
    diff = pair({"service.py": b"a\n", "work.ipynb": old}, {"service.py": b"a\n", "work.ipynb": new})["work.ipynb"]
    assert diff.is_notebook and diff.status == "modified"
    texts = [(line.kind, _text(line.html)) for line in diff.lines if line.kind in ("add", "delete")]
    assert texts == [("delete", "x = 1"), ("add", "x = 2")]
    assert any(_text(line.html) == "# cell 2 [code]" for line in diff.lines)
    assert not any('"outputs"' in _text(line.html) for line in diff.lines)


def test_a_notebook_whose_only_change_is_its_outputs_is_unchanged(pair):
    old = notebook(("code", "print(1)"), outputs="1")
    new = notebook(("code", "print(1)"), outputs="one")
    diff = pair({"service.py": b"a\n", "work.ipynb": old}, {"service.py": b"a\n", "work.ipynb": new})["work.ipynb"]
    assert diff.status == "unchanged"


def test_an_unparsable_notebook_falls_back_to_a_text_diff(pair):
    diffs = pair(
        {"service.py": b"a\n", "work.ipynb": b"{not json\n"}, {"service.py": b"a\n", "work.ipynb": b"{still not\n"}
    )
    diff = diffs["work.ipynb"]
    assert diff.status == "modified" and not diff.is_notebook
    assert [_text(line.html) for line in diff.lines] == ["{not json", "{still not"]


def test_notebook_text_numbers_cells_and_names_their_kind():
    text = notebook_text(notebook(("markdown", "Hi"), ("code", "a = 1\n")).decode())
    assert text == "# cell 1 [markdown]\nHi\n\n# cell 2 [code]\na = 1\n"
    assert notebook_text("[1, 2]") is None
    assert notebook_text('{"cells": [3]}') is None


def test_code_is_escaped_in_the_diff_and_on_the_page(pair):
    hostile = b"x = '<script>alert(1)</script>'\n"
    diffs = pair({"service.py": b"x = 1\n"}, {"service.py": hostile, "notes.md": b"<script>alert(2)</script>\n"})
    html = render_to_string("labs/_diff.html", {"diffs": list(diffs.values())})
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert 'id="' + diffs["service.py"].anchor + '"' in html


def test_the_template_collapses_unchanged_files_and_numbers_changed_lines(pair):
    diffs = pair({"service.py": b"a\nb\n", "same.py": b"x\n"}, {"service.py": b"a\nB\n", "same.py": b"x\n"})
    html = render_to_string("labs/_diff.html", {"diffs": list(diffs.values())})
    assert '<p class="diff-unchanged"' in html and "<code>same.py</code>" in html
    assert '<tr class="diff-add"><td class="ln"></td><td class="ln">2</td>' in html
    assert '<tr class="diff-delete"><td class="ln">2</td><td class="ln"></td>' in html
    assert html.count('class="file-diff ') == 1


def _text(html) -> str:
    return unescape(re.sub(r"<[^>]+>", "", str(html)))
