from django.http import HttpRequest


def navigation(request: HttpRequest) -> dict:
    """What the header shows a logged-in user: at most one query per request, none for anonymous readers."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"show_review_queue": False}
    # Fragments rendered with the request run context processors again; ask the database once.
    if not hasattr(request, "_show_review_queue"):
        from labs.permissions import can_use_review_queue

        request._show_review_queue = can_use_review_queue(user=user)
    return {"show_review_queue": request._show_review_queue}
