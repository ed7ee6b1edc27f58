"""The notifications page and the email address pages. Thin: selectors read, services write."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from notifications import selectors, services
from notifications.forms import EmailAddressForm
from notifications.permissions import access_notification_by_id


@login_required
@require_http_methods(["GET"])
def notification_list(request: HttpRequest) -> HttpResponse:
    page = selectors.notifications_page(user=request.user, page=request.GET.get("page"))
    context = {
        "page": page,
        "unread": selectors.notification_unread_count(user=request.user),
        "address": selectors.email_address_get(user=request.user),
    }
    return render(request, "notifications/list.html", context)


@login_required
@require_http_methods(["POST"])
def notification_read_all(request: HttpRequest) -> HttpResponse:
    services.notifications_mark_all_read(user=request.user)
    return redirect("notifications:list")


@login_required
@require_http_methods(["GET"])
def notification_open(request: HttpRequest, notification_id: int) -> HttpResponse:
    """Mark the notification read and go where it points: a path on this site, never another host."""
    notification = access_notification_by_id(notification_id=notification_id, user=request.user)
    services.notification_mark_read(notification=notification)
    if not services.url_is_on_site(notification.url):
        return redirect("notifications:list")
    return redirect(notification.url)


@login_required
@require_http_methods(["GET", "POST"])
def email_settings(request: HttpRequest) -> HttpResponse:
    address = selectors.email_address_get(user=request.user)
    initial = {"email": address.email if address else request.user.email}
    form = EmailAddressForm(initial=initial, user=request.user)
    status = 200
    if request.method == "POST" and request.POST.get("action") == "resend":
        if address is None or address.is_verified:
            return redirect("email_settings")
        try:
            services.email_verification_send(address=address, check_interval=True)
        except services.EmailResendTooSoon as exc:
            messages.error(request, f"{exc.message} {exc.hint}")
        else:
            messages.success(request, f"A new link is on its way to {address.email}.")
        return redirect("email_settings")
    if request.method == "POST":
        form = EmailAddressForm(request.POST, user=request.user)
        if form.is_valid():
            address = services.email_address_set(user=request.user, email=form.cleaned_data["email"])
            if address.is_verified:
                messages.success(request, f"{address.email} is already your verified address.")
            else:
                messages.success(request, f"We mailed a link to {address.email}: open it to confirm the address.")
            return redirect("email_settings")
        status = 400
    return render(request, "notifications/email_settings.html", {"form": form, "address": address}, status=status)


@require_http_methods(["GET"])
def email_verify(request: HttpRequest, token: str) -> HttpResponse:
    """The link mailed to an address. It names the user itself, so it works without logging in first."""
    try:
        address = services.email_address_verify(token=token)
    except services.EmailVerificationRefused as exc:
        return render(request, "notifications/email_verify.html", {"error": exc}, status=400)
    return render(request, "notifications/email_verify.html", {"address": address})
