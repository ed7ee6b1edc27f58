from django.http import HttpRequest


def navigation(request: HttpRequest) -> dict:
    """What the header shows a logged-in user: the review queue link (one query) and the unread notifications
    count (one COUNT, made only when a page's header shows it: fragments never do). None for anonymous readers."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"show_review_queue": False, "unread_notifications": 0}
    # Fragments rendered with the request run context processors again; ask the database once.
    if not hasattr(request, "_show_review_queue"):
        from labs.permissions import can_use_review_queue

        request._show_review_queue = can_use_review_queue(user=user)
    return {"show_review_queue": request._show_review_queue, "unread_notifications": lambda: _unread(request)}


def _unread(request: HttpRequest) -> int:
    """Called by the template (which calls callables); counted once per request however often it is shown."""
    if not hasattr(request, "_unread_notifications"):
        from notifications.selectors import notification_unread_count

        request._unread_notifications = notification_unread_count(user=request.user)
    return request._unread_notifications
