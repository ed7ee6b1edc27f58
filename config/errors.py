"""Error pages: JSON for the API (its clients are programs), HTML for everyone else."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"error": "not found", "hint": "Check the path; the CLI's commands use /api/labs/… and /api/revisions/…"},
            status=404,
        )
    return page_not_found(request, exception)
