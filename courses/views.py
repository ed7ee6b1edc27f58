from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from courses.models import Course


def catalog(request: HttpRequest) -> HttpResponse:
    return render(request, "courses/catalog.html", {"courses": Course.objects.all()})
