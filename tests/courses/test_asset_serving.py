"""Course assets served by digest: the stored bytes with their own type, cached for a year, an SVG that cannot run
script, data files downloaded rather than shown; everything else is the site's ordinary 404."""

import hashlib

import pytest
from django.test import Client

from config.security import CONTENT_SECURITY_POLICY
from courses.coursefs.spec import asset_url
from courses.models import CourseAsset
from tests.courses import factories

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><rect width="10" height="10"/></svg>'
CSV = b"service,p99_ms\nquotes,120\n"
NOTEBOOK = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
SVG_POLICY = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


def stored(data: bytes, media_type: str) -> str:
    digest = hashlib.sha256(data).hexdigest()
    CourseAsset.objects.create(sha256=digest, media_type=media_type, size=len(data), data=data)
    return digest


@pytest.mark.parametrize(
    ("data", "media_type", "filename"),
    [
        (PNG, "image/png", "flow.png"),
        (PNG, "image/png", "FLOW.PNG"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 8, "image/jpeg", "photo.jpeg"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 8, "image/jpeg", "photo.jpg"),
        (b"GIF89a" + b"\x00" * 8, "image/gif", "spinner.gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp", "chart.webp"),
    ],
)
def test_an_image_is_served_with_its_type_and_a_year_long_cache(client, data, media_type, filename):
    digest = stored(data, media_type)
    response = client.get(asset_url(digest, filename))
    assert response.status_code == 200
    assert response.content == data
    assert response["Content-Type"] == media_type
    assert response["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["ETag"] == f'"{digest}"'
    assert "Content-Disposition" not in response  # shown in the page, not downloaded


def test_an_svg_gets_a_policy_under_which_nothing_in_it_runs(client):
    digest = stored(SVG, "image/svg+xml")
    response = client.get(asset_url(digest, "flow.svg"))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    # Its own policy, not the site's (which the security middleware adds only where a view set none).
    assert response["Content-Security-Policy"] == SVG_POLICY
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "Content-Disposition" not in response


def test_a_png_keeps_the_site_policy(client):
    response = client.get(asset_url(stored(PNG, "image/png"), "flow.png"))
    assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


@pytest.mark.parametrize(
    ("data", "media_type", "filename"),
    [
        (CSV, "text/csv", "latencies.csv"),
        (b"service\tp99_ms\nquotes\t120\n", "text/tab-separated-values", "latencies.tsv"),
        (b'{"p99": 120}', "application/json", "budget.json"),
        (b"notes\n", "text/plain", "notes.txt"),
        (NOTEBOOK, "application/x-ipynb+json", "explore.ipynb"),
    ],
)
def test_a_data_file_is_downloaded_under_its_name(client, data, media_type, filename):
    digest = stored(data, media_type)
    response = client.get(asset_url(digest, filename))
    assert response.status_code == 200
    assert response.content == data
    assert response["Content-Type"] == media_type
    assert response["Content-Disposition"] == f'attachment; filename="{filename}"'
    assert response["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_head_answers_the_headers_without_the_bytes(client):
    digest = stored(SVG, "image/svg+xml")
    response = client.head(asset_url(digest, "flow.svg"))
    assert response.status_code == 200
    assert response.content == b""
    assert response["Content-Type"] == "image/svg+xml"
    assert response["Content-Security-Policy"] == SVG_POLICY


def test_a_client_holding_the_digest_gets_304_with_the_same_policy(client, django_assert_num_queries):
    digest = stored(SVG, "image/svg+xml")
    with django_assert_num_queries(0):  # the digest is the content: nothing to look up
        response = client.get(asset_url(digest, "flow.svg"), headers={"If-None-Match": f'"{digest}"'})
    assert response.status_code == 304
    assert response.content == b""
    # A 304 refreshes the headers a browser stored: it must not bring the site's looser policy to the SVG.
    assert response["Content-Security-Policy"] == SVG_POLICY
    assert response["Cache-Control"] == "public, max-age=31536000, immutable"


def test_a_logged_in_learner_gets_the_same_cacheable_answer():
    digest = stored(PNG, "image/png")
    client = Client()
    client.force_login(factories.user_create())
    response = client.get(asset_url(digest, "flow.png"))
    assert response.status_code == 200
    # Not "no-store" as their personal pages: the same bytes for everyone, named by their digest.
    assert response["Cache-Control"] == "public, max-age=31536000, immutable"
    assert "Cookie" not in response.get("Vary", "")


def test_an_unknown_digest_is_404(client):
    response = client.get(asset_url("a" * 64, "flow.png"))
    assert response.status_code == 404
    assert b"Page not found" in response.content
    assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "immutable" not in response.get("Cache-Control", "")


@pytest.mark.parametrize(
    "filename",
    [
        "flow.svg",  # a PNG asked for as an SVG
        "flow.csv",  # … as a data file
        "flow.html",  # an extension never served
        "flow",  # no extension
        ".png",  # no name
        "flow.png.exe",
    ],
)
def test_a_filename_whose_extension_does_not_name_the_stored_type_is_404(client, filename):
    digest = stored(PNG, "image/png")
    assert client.get(asset_url(digest, "flow.png")).status_code == 200
    assert client.get(asset_url(digest, filename)).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/course-assets/{short}/flow.png",  # not a whole digest
        "/course-assets/{upper}/flow.png",  # digests are lower-case hex
        "/course-assets/{digest}/-flow.png",  # a name that could be read as an option
        "/course-assets/{digest}/fl%22ow.png",  # a quote, which would break the Content-Disposition header
        "/course-assets/{digest}/",
    ],
)
def test_malformed_asset_urls_are_404(client, path):
    digest = stored(PNG, "image/png")
    url = path.format(digest=digest, short=digest[:63], upper=digest.upper())
    assert client.get(url).status_code == 404


def test_posting_to_an_asset_is_refused(client):
    digest = stored(PNG, "image/png")
    assert client.post(asset_url(digest, "flow.png")).status_code == 405


def test_the_same_bytes_under_another_data_extension_are_served_with_that_type(client):
    # data.txt renamed data.csv (or the same file in two courses): one row, first stored as text/plain.
    digest = stored(CSV, "text/plain")
    response = client.get(asset_url(digest, "latencies.csv"))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    assert response.content == CSV
    assert client.get(asset_url(digest, "latencies.txt"))["Content-Type"] == "text/plain"


def test_text_bytes_asked_for_as_an_svg_must_pass_the_svg_checks(client):
    hostile = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    digest = stored(hostile, "text/plain")
    assert client.get(asset_url(digest, "notes.txt")).status_code == 200
    assert client.get(asset_url(digest, "notes.svg")).status_code == 404
    safe = stored(SVG, "text/plain")
    response = client.get(asset_url(safe, "figure.svg"))
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == SVG_POLICY
