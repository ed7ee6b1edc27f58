import logging
from dataclasses import dataclass

from django.core.cache import caches
from django.http import HttpRequest

from notifications.selectors import ACCOUNT_HEADER_SECONDS, account_header_keys

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _HeaderFacts:
    """What the header shows that is read from other tables than the user's: kept per user in the shared cache."""

    reviews_a_course: bool  # a reviewer's or instructor's enrollment somewhere (site staff are read off the user)
    unread: int


def navigation(request: HttpRequest) -> dict:
    """What the header shows a logged-in user: the review queue link and the unread notifications count, from the
    shared cache (one round trip) while no write changed them. None for anonymous readers."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"show_review_queue": False, "unread_notifications": 0}
    from labs.permissions import is_site_staff

    # Fragments rendered with the request run context processors again; ask the cache once.
    if not hasattr(request, "_header_facts"):
        request._header_facts = _header_facts(user)
    facts = request._header_facts
    # Staff is a column of the user row, read fresh each request; only the enrollment part is cached.
    show_review_queue = is_site_staff(user=user) or facts.reviews_a_course
    return {"show_review_queue": show_review_queue, "unread_notifications": facts.unread}


def _header_facts_read(user) -> _HeaderFacts:
    """Two queries: the enrollment that grants the review queue, and one indexed COUNT (user, read_at)."""
    from labs.permissions import can_use_review_queue
    from notifications.selectors import notification_unread_count

    # A staff member is let through without a query, so for one the flag is False here and the staff check above
    # decides: losing staff then shows the enrollment's answer, not a cached True.
    reviews = not user.is_staff and not user.is_superuser and can_use_review_queue(user=user)
    return _HeaderFacts(reviews_a_course=reviews, unread=notification_unread_count(user=user))


def _header_facts(user) -> _HeaderFacts:
    """The facts kept under the user's current version (see notifications.selectors.account_header_keys).

    The version is read before the database, and every write bumps it after committing: a reader who read the
    database before a write stores its facts under a version nobody asks for again, so no stale count survives a
    write. Without the shared cache (Redis down) the facts are read from the database.
    """
    shared = caches["shared"]
    version_key, facts_key = account_header_keys(user_id=user.pk)
    try:
        found = shared.get_many([version_key, facts_key])
        version = found.get(version_key)
        if version is None:  # first visit, or the key expired or was evicted: start from a version never used
            version = _version_start(shared, version_key)
        entry = found.get(facts_key)
        # The join date tells apart two users given the same id (one rolled back, as in tests, then the next).
        if entry is not None and version is not None and entry[:2] == (version, user.date_joined):
            return entry[2]
    except Exception:  # the header is never worth a failed page
        logger.warning("the shared cache did not answer: the header is read from the database", exc_info=True)
        return _header_facts_read(user)
    facts = _header_facts_read(user)
    if version is not None:
        try:
            shared.set(facts_key, (version, user.date_joined, facts), timeout=ACCOUNT_HEADER_SECONDS)
        except Exception:
            logger.warning("the shared cache did not answer: the header facts are not kept", exc_info=True)
    return facts


def _version_start(shared, version_key: str) -> int | None:
    import secrets

    # Random, not 0: facts stored under an earlier life of the key must not match a new one.
    version = secrets.randbits(62)
    if shared.add(version_key, version, timeout=None):
        return version
    return shared.get(version_key)  # another request started it first; None if it is already gone again
