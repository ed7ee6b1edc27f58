"""Accounts: usernames normalised and never confusable with another at signup; an email address asked at signup,
unique in any case and verified by a signed link; password change for a logged-in user; password reset by email;
API tokens that expire.

Personas: an anonymous visitor signing up; `learner`, an existing account (with or without an email address);
site staff, for the admin's own password page.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.core import mail, signing
from django.test import Client
from django.utils import timezone

from courses.forms import username_skeleton
from labs.models import ApiToken
from labs.services.tokens import api_token_authenticate, api_token_create
from notifications.models import EmailAddress
from notifications.services import email_address_set, email_verification_token

pytestmark = pytest.mark.django_db

PASSWORD = "an-old-pw-for-tests-42"
NEW_PASSWORD = "a-new-pw-for-tests-97"
CONFUSABLE = "This username looks the same as one that is already taken"


@pytest.fixture(autouse=True)
def private_throttles(settings, request):
    """The signup throttle counts in the "shared" cache: a fresh in-process one per test."""
    location = f"accounts-{request.node.nodeid}"
    settings.CACHES = {
        **settings.CACHES,
        "shared": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": location},
    }


@pytest.fixture
def learner():
    return get_user_model().objects.create_user(username="learner", password=PASSWORD)


def sign_up(username: str, client: Client | None = None):
    client = client or Client()
    data = {
        "username": username,
        "email": f"u{username.encode().hex()[:40]}@example.com",  # any username, an address of ASCII letters
        "password1": "a-long-pw-for-tests-42",
        "password2": "a-long-pw-for-tests-42",
    }
    return client.post("/accounts/signup/", data)


def assert_site_page(response) -> str:
    """A page of the site (base.html), not the admin's look."""
    html = response.content.decode()
    assert '<a class="brand"' in html
    assert "Django administration" not in html
    return html


# --- usernames -------------------------------------------------------------------------------------------------


def test_an_anonymous_visitor_signing_up_gets_the_nfkc_normalised_username():
    response = sign_up("\uff4c\uff45\uff41\uff52\uff4e\uff45\uff52\uff12")  # fullwidth letters and digit
    assert response.status_code == 302
    assert get_user_model().objects.filter(username="learner2").exists()


@pytest.mark.parametrize(
    "username",
    [
        "le\u0430rner",  # Cyrillic a
        "l\u0435\u0430rn\u0435r",  # Cyrillic e and a
        "le\u03b1rner",  # Greek alpha
        "LE\u0391RNER",  # Greek capital alpha among Latin capitals
        "\u217cearner",  # SMALL ROMAN NUMERAL FIFTY: NFKC makes it a Latin l
        "Learner",
        "LEARNER",
        "\uff4c\uff45\uff41\uff52\uff4e\uff45\uff52",  # fullwidth
    ],
)
def test_an_anonymous_visitor_cannot_sign_up_as_a_look_alike_of_learner(learner, username):
    response = sign_up(username)
    assert response.status_code == 200
    html = response.content.decode()
    assert CONFUSABLE in html or "A user with that username already exists." in html
    assert get_user_model().objects.count() == 1


def test_a_look_alike_is_refused_with_the_confusable_message(learner):
    response = sign_up("le\u0430rner")
    assert CONFUSABLE in response.content.decode()
    assert "letters from another alphabet that look alike" in response.content.decode()


def test_a_username_differing_only_in_non_ascii_case_is_refused():
    # SQLite's iexact, which Django's own check uses, folds ASCII only: "ÉMILE" slips past it.
    get_user_model().objects.create_user(username="émile", password=PASSWORD)
    response = sign_up("ÉMILE")
    # PostgreSQL's iexact folds "É" already, so Django's own check refuses it there, with its own message.
    assert (
        CONFUSABLE in response.content.decode()
        or "A user with that username already exists." in response.content.decode()
    )
    assert get_user_model().objects.count() == 1


def test_a_look_alike_of_an_account_made_in_the_admin_is_refused_too():
    get_user_model().objects.create_user(username="Reviewer", password=PASSWORD)
    assert CONFUSABLE in sign_up("r\u0435vi\u0435w\u0435r").content.decode()


@pytest.mark.parametrize("username", ["иван", "ελένη", "learner2", "1earner", "leamer", "lerner"])
def test_names_that_read_differently_from_learner_are_accepted(learner, username):
    assert sign_up(username).status_code == 302
    assert get_user_model().objects.filter(username=username).exists()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("learner", "le\u0430rner"),
        ("paypal", "\u0440\u0430yp\u0430l"),
        ("Hello", "\u041d\u0415LLO"),
        ("ë", "\u0451"),  # Latin e with diaeresis, Cyrillic io
        ("ivan", "\u0399VAN"),
        ("ﬁle", "file"),  # the ligature is two letters after NFKC
        ("µ", "\u03bc"),  # micro sign, Greek mu
    ],
)
def test_the_skeleton_of_look_alike_names_is_the_same(a, b):
    assert username_skeleton(a) == username_skeleton(b)


@pytest.mark.parametrize(("a", "b"), [("learner", "1earner"), ("rn", "m"), ("o", "0"), ("ivan", "иван")])
def test_the_skeleton_keeps_apart_what_is_only_similar(a, b):
    assert username_skeleton(a) != username_skeleton(b)


# --- email addresses ------------------------------------------------------------------------------------------


def verification_link(message) -> str:
    match = re.search(r"http://127\.0\.0\.1:8000(/accounts/email/verify/[^/\s]+/)", message.body)
    assert match, message.body
    return match.group(1)


def test_the_signup_form_asks_for_an_email_address():
    html = Client().get("/accounts/signup/").content.decode()
    assert 'type="email" name="email"' in html
    assert re.search(r'<input type="email" name="email"[^>]*required', html)


def test_a_signup_without_an_email_address_is_refused():
    response = Client().post(
        "/accounts/signup/", {"username": "ada", "password1": "a-long-pw-42", "password2": "a-long-pw-42"}
    )
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert not get_user_model().objects.filter(username="ada").exists()


@pytest.mark.parametrize("email", ["not-an-address", "ada@", "@example.com"])
def test_a_signup_with_a_malformed_address_is_refused(email):
    data = {"username": "ada", "email": email, "password1": "a-long-pw-42", "password2": "a-long-pw-42"}
    response = Client().post("/accounts/signup/", data)
    assert "Enter a valid email address." in response.content.decode()
    assert not get_user_model().objects.filter(username="ada").exists()


@pytest.mark.parametrize("email", ["Taken@Example.com", "taken@example.com", "TAKEN@EXAMPLE.COM"])
def test_an_address_another_account_has_is_refused_in_any_case(email):
    owner = get_user_model().objects.create_user(username="owner", password=PASSWORD)
    EmailAddress.objects.create(user=owner, email="taken@example.com")
    data = {"username": "ada", "email": email, "password1": "a-long-pw-42", "password2": "a-long-pw-42"}
    response = Client().post("/accounts/signup/", data)
    assert "This email address belongs to another account." in response.content.decode()
    assert not get_user_model().objects.filter(username="ada").exists()


def test_signing_up_mails_a_link_that_verifies_the_address_once(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = sign_up("ada")
    user = get_user_model().objects.get(username="ada")
    address = EmailAddress.objects.get(user=user)
    assert response.status_code == 302
    assert user.email == address.email and address.verified_at is None
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [address.email]
    link = verification_link(mail.outbox[0])

    first = Client().get(link)
    again = Client().get(link)

    assert first.status_code == 200 and "is verified" in first.content.decode()
    address.refresh_from_db()
    assert address.verified_at is not None
    assert again.status_code == 400
    assert "This link was already used" in again.content.decode()


def test_an_expired_link_is_refused_with_a_clear_message(learner, settings, django_capture_on_commit_callbacks):
    settings.EMAIL_VERIFICATION_DAYS = 3
    with django_capture_on_commit_callbacks(execute=True):
        email_address_set(user=learner, email="learner@example.com")
    link = verification_link(mail.outbox[0])

    later = time.time() + 3 * 24 * 3600 + 5
    with mock.patch("django.core.signing.time.time", return_value=later):
        response = Client().get(link)

    assert response.status_code == 400
    assert "This link has expired: links work for 3 days." in response.content.decode()
    assert not EmailAddress.objects.get(user=learner).is_verified


@pytest.mark.parametrize("tamper", ["signature", "payload", "cut"])
def test_a_tampered_link_is_refused_with_a_clear_message(learner, tamper):
    address = EmailAddress.objects.create(user=learner, email="learner@example.com")
    token = email_verification_token(address=address)
    value, _, signature = token.rpartition(":")
    if tamper == "signature":
        token = f"{value}:{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}"
    elif tamper == "payload":
        # Another user's id and address under the original signature.
        forged = signing.b64_encode(b'{"user":1,"email":"me@example.com"}').decode()
        token = forged + token[token.index(":") :]
    else:
        token = token[: len(token) // 2]

    response = Client().get(f"/accounts/email/verify/{token}/")

    assert response.status_code == 400
    assert "This link is not valid" in response.content.decode()
    address.refresh_from_db()
    assert not address.is_verified


def test_a_link_for_an_address_since_changed_is_refused(learner, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        email_address_set(user=learner, email="old@example.com")
        email_address_set(user=learner, email="new@example.com")
    old_link, new_link = (verification_link(m) for m in mail.outbox)

    refused = Client().get(old_link)

    assert refused.status_code == 400
    assert "no longer on the account" in refused.content.decode()
    assert Client().get(new_link).status_code == 200
    assert EmailAddress.objects.get(user=learner).email == "new@example.com"


def test_a_learner_without_an_address_adds_one_on_the_email_page(learner, django_capture_on_commit_callbacks):
    client = Client()
    client.force_login(learner)
    assert "Your account has no email address" in client.get("/accounts/email/").content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/accounts/email/", {"email": "Learner@Example.COM"})

    assert response.status_code == 302
    address = EmailAddress.objects.get(user=learner)
    assert address.email == "Learner@example.com" and not address.is_verified
    learner.refresh_from_db()
    assert learner.email == "Learner@example.com"
    assert mail.outbox[0].to == ["Learner@example.com"]
    assert "is waiting for confirmation" in client.get("/accounts/email/").content.decode()


def test_the_email_page_resends_the_link_at_most_once_a_minute(learner, django_capture_on_commit_callbacks):
    client = Client()
    client.force_login(learner)
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/accounts/email/", {"email": "learner@example.com"})
        too_soon = client.post("/accounts/email/", {"action": "resend"}, follow=True)
    assert len(mail.outbox) == 1
    assert "less than a minute ago" in too_soon.content.decode()

    EmailAddress.objects.filter(user=learner).update(verification_sent_at=timezone.now() - timedelta(minutes=2))
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/accounts/email/", {"action": "resend"})
    assert len(mail.outbox) == 2
    assert verification_link(mail.outbox[1])


def test_the_email_page_refuses_another_accounts_address(learner):
    other = get_user_model().objects.create_user(username="other", password=PASSWORD, email="other@example.com")
    client = Client()
    client.force_login(learner)
    response = client.post("/accounts/email/", {"email": "OTHER@example.com"})
    assert response.status_code == 400
    assert "This email address belongs to another account." in response.content.decode()
    assert not EmailAddress.objects.filter(user=learner).exists()
    assert other.email == "other@example.com"


def test_an_anonymous_visitor_is_sent_to_log_in_for_the_email_page():
    response = Client().get("/accounts/email/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


# --- password change --------------------------------------------------------------------------------------------


def test_the_learner_changes_their_password_and_stays_logged_in(learner):
    client = Client()
    client.force_login(learner)
    page = client.get("/accounts/password/change/")
    assert page.status_code == 200
    assert 'name="old_password"' in assert_site_page(page)
    response = client.post(
        "/accounts/password/change/",
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    assert response["Location"] == "/accounts/password/change/done/"
    assert "Your password was changed" in assert_site_page(client.get(response["Location"]))
    learner.refresh_from_db()
    assert learner.check_password(NEW_PASSWORD)
    assert client.get("/account/tokens/").status_code == 200  # still logged in here


def test_a_wrong_current_password_changes_nothing(learner):
    client = Client()
    client.force_login(learner)
    response = client.post(
        "/accounts/password/change/",
        {"old_password": "not-it", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 200
    assert "Your old password was entered incorrectly" in response.content.decode()
    learner.refresh_from_db()
    assert learner.check_password(PASSWORD)


def test_an_anonymous_visitor_is_sent_to_log_in_before_changing_a_password():
    response = Client().get("/accounts/password/change/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_a_password_change_post_needs_its_csrf_token(learner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(learner)
    data = {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    assert client.post("/accounts/password/change/", data).status_code == 403
    learner.refresh_from_db()
    assert learner.check_password(PASSWORD)


def test_the_admins_own_password_page_keeps_the_admin_look():
    staff = get_user_model().objects.create_user(username="boss", password=PASSWORD, is_staff=True)
    client = Client()
    client.force_login(staff)
    html = client.get("/admin/password_change/").content.decode()
    assert "Django administration" in html or "Django site admin" in html


# --- password reset ---------------------------------------------------------------------------------------------


def reset_link(message) -> str:
    match = re.search(r"http://testserver(/accounts/password/reset/[^/\s]+/[^/\s]+/)", message.body)
    assert match, message.body
    return match.group(1)


def test_the_learner_resets_a_forgotten_password_by_email(learner):
    learner.email = "learner@example.org"
    learner.save()
    client = Client()
    assert "Reset your password" in assert_site_page(client.get("/accounts/password/reset/"))
    response = client.post("/accounts/password/reset/", {"email": "LEARNER@example.org"})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/password/reset/sent/"
    assert "Check your email" in assert_site_page(client.get(response["Location"]))
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["learner@example.org"]
    assert message.subject == "Reset your Shipshape password"
    assert '"learner"' in message.body
    link = reset_link(message)
    # Django swaps the token for a session marker before showing the form, so the token never sits in the page.
    form_url = client.get(link)["Location"]
    form = client.get(form_url)
    assert "Choose a new password" in assert_site_page(form)
    done = client.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done["Location"] == "/accounts/password/reset/complete/"
    assert "Your new password is set" in assert_site_page(client.get(done["Location"]))
    learner.refresh_from_db()
    assert learner.check_password(NEW_PASSWORD)
    # The link works once.
    again = Client().get(link, follow=True)
    assert "This link does not work" in again.content.decode()


def test_a_reset_for_an_unknown_address_answers_the_same_and_sends_nothing(learner):
    response = Client().post("/accounts/password/reset/", {"email": "nobody@example.org"})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/password/reset/sent/"
    assert mail.outbox == []


def test_an_account_without_an_email_address_gets_no_reset_mail(learner):
    assert learner.email == ""
    Client().post("/accounts/password/reset/", {"email": ""})
    Client().post("/accounts/password/reset/", {"email": "learner@example.org"})
    assert mail.outbox == []


def test_a_disabled_account_gets_no_reset_mail(learner):
    learner.email = "learner@example.org"
    learner.is_active = False
    learner.save()
    Client().post("/accounts/password/reset/", {"email": "learner@example.org"})
    assert mail.outbox == []


@pytest.mark.parametrize("link", ["/accounts/password/reset/MQ/wrong-token/", "/accounts/password/reset/²/x/"])
def test_a_forged_reset_link_shows_that_it_does_not_work(learner, link):
    response = Client().get(link)
    assert response.status_code == 200
    assert "This link does not work" in assert_site_page(response)


def test_the_reset_pages_post_only_with_their_csrf_token():
    client = Client(enforce_csrf_checks=True)
    assert client.post("/accounts/password/reset/", {"email": "x@example.org"}).status_code == 403


# --- API tokens expire ------------------------------------------------------------------------------------------


def tokens_page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def api_status(raw: str) -> int:
    """An API call with the token: 404 (no such revision) once authenticated, 401 when the token is refused."""
    return Client().get("/api/revisions/999999", headers={"Authorization": f"Bearer {raw}"}).status_code


@pytest.mark.parametrize("days", [30, 90, 365])
def test_the_learner_creates_a_token_lasting_the_days_they_choose(learner, days):
    before = timezone.now()
    response = tokens_page_client(learner).post("/account/tokens/", {"action": "create", "expires_in_days": days})
    assert response.status_code == 200
    assert "export SHIPSHAPE_TOKEN=ss_" in response.content.decode()
    token = ApiToken.objects.get(user=learner)
    assert before + timedelta(days=days) <= token.expires_at <= timezone.now() + timedelta(days=days)


def test_a_token_created_without_a_choice_lasts_90_days(learner):
    tokens_page_client(learner).post("/account/tokens/", {"action": "create"})
    api_token_create(user=learner)
    for token in ApiToken.objects.filter(user=learner):
        lifetime = token.expires_at - token.created_at
        assert timedelta(days=90) - timedelta(seconds=5) < lifetime <= timedelta(days=90), token


@pytest.mark.parametrize("days", ["7", "3650", "0", "-90", "²", "90 ", "9" * 5000])
def test_a_lifetime_not_offered_is_refused_and_creates_no_token(learner, days):
    response = tokens_page_client(learner).post("/account/tokens/", {"action": "create", "expires_in_days": days})
    assert response.status_code == 400
    assert "A token lasts 30, 90 or 365 days" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_the_service_refuses_a_lifetime_not_offered(learner):
    with pytest.raises(ValueError, match="lifetime_days"):
        api_token_create(user=learner, lifetime_days=7)


def test_the_create_form_offers_30_90_and_365_days_with_90_chosen(learner):
    html = tokens_page_client(learner).get("/account/tokens/").content.decode()
    assert re.findall(r'<option value="(\d+)"', html) == ["30", "90", "365"]
    assert '<option value="90" selected>' in html


def test_the_api_refuses_an_expired_token_and_does_not_mark_it_used(learner):
    token, raw = api_token_create(user=learner)
    assert api_status(raw) == 404
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1), last_used_at=None)
    assert api_status(raw) == 401
    assert api_token_authenticate(raw=raw) is None
    token.refresh_from_db()
    assert token.last_used_at is None


def test_a_token_works_until_its_expiry(learner):
    token, raw = api_token_create(user=learner, lifetime_days=30)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() + timedelta(minutes=1))
    assert api_status(raw) == 404
    assert api_token_authenticate(raw=raw) == learner


def test_the_tokens_page_shows_each_tokens_last_use_and_expiry(learner):
    used, raw = api_token_create(user=learner, lifetime_days=365)
    expired, _ = api_token_create(user=learner, lifetime_days=30)
    ApiToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))
    assert api_status(raw) == 404  # marks it used
    used.refresh_from_db()
    html = tokens_page_client(learner).get("/account/tokens/").content.decode()
    assert '<th scope="col">Last used</th><th scope="col">Expires</th>' in html
    assert used.last_used_at.strftime("%Y-%m-%d %H:%M") in html
    assert used.expires_at.strftime("%Y-%m-%d %H:%M") in html
    assert "never" in html  # the expired one was never used
    assert html.count("<strong>expired</strong>") == 1


def test_a_revoke_with_a_garbled_token_id_revokes_nothing_and_does_not_crash(learner):
    token, _ = api_token_create(user=learner)
    client = tokens_page_client(learner)
    for token_id in ["²", "٣", "9" * 30, "9" * 5000, "-1", "", f" {token.pk}", f"{token.pk}.0"]:
        response = client.post("/account/tokens/", {"action": "revoke", "token_id": token_id})
        assert response.status_code == 302, token_id
    assert ApiToken.objects.filter(pk=token.pk).exists()
    client.post("/account/tokens/", {"action": "revoke", "token_id": str(token.pk)})
    assert not ApiToken.objects.exists()
