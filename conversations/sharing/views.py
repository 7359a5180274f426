"""Share links: the owner makes one from a conversation (htmx shows it to copy), lists and
revokes them; anyone with the link (and an account, unless the site allows public links)
reads the shared snapshot, a page without any action on the conversation."""

from __future__ import annotations

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from conversations.accounts.selectors import site_settings
from conversations.chat.selectors import get_conversation_for_user, page_number

from . import selectors, services
from .models import ShareLink

LINKS = "sharing/links.html"


def _url(request: HttpRequest, link: ShareLink) -> str:
    return request.build_absolute_uri(reverse("shared_conversation", args=[link.token]))


@login_required
@require_POST
def conversation_share(request: HttpRequest, pk: int) -> HttpResponse:
    """A new link to the conversation as it is now: shown in place to copy (htmx), or on
    the list of links."""
    conversation = get_conversation_for_user(request.user, pk)
    try:
        link = services.share_link_create(owner=request.user, conversation=conversation)
    except ValidationError as error:
        text = " ".join(error.messages)
        if request.htmx:
            # 200: htmx 2 does not swap 4xx answers, and the reason must be seen.
            return render(request, f"{LINKS}#share-refused", {"error": text})
        messages.error(request, text)
        return redirect("conversation_detail", pk=pk)
    if request.htmx:
        link.url = _url(request, link)
        context = {"link": link, "public": site_settings().public_share_links}
        return render(request, f"{LINKS}#share-made", context)
    messages.success(
        request,
        _("A share link to “%(title)s” is made: copy it from the list below.")
        % {"title": link.title or _("New chat")},
    )
    return redirect("share_links")


@login_required
@require_GET
def share_links(request: HttpRequest) -> HttpResponse:
    page = selectors.share_links_page(request.user, page_number(request.GET.get("page")))
    for link in page.links:
        if link.is_live:
            link.url = _url(request, link)
    site = site_settings()
    context = {"page": page, "enabled": site.sharing, "public": site.public_share_links}
    return render(request, LINKS, context)


@login_required
@require_POST
def share_link_revoke(request: HttpRequest, link_id: int) -> HttpResponse:
    link = selectors.get_share_link_for_user(request.user, link_id)
    services.share_link_revoke(link=link)
    messages.success(
        request,
        _("The share link to “%(title)s” is revoked: it no longer opens.")
        % {"title": link.title or _("New chat")},
    )
    return redirect("share_links")


def _unlisted(view):
    """The token is in the URL: no search engine lists the page, no cache keeps it, and no
    link followed from it tells another site the address (a login redirect included)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response["X-Robots-Tag"] = "noindex, nofollow"
        response["Referrer-Policy"] = "no-referrer"
        patch_cache_control(response, private=True, no_store=True)
        return response

    return wrapper


@require_GET
@_unlisted
def shared_conversation(request: HttpRequest, token: str) -> HttpResponse:
    site = site_settings()
    # Sent to log in before the token is looked up: a visitor learns nothing of it.
    if not request.user.is_authenticated and not site.public_share_links:
        return redirect_to_login(request.get_full_path())
    snapshot = selectors.shared_snapshot(token, site=site)
    context = {
        "link": snapshot.link,
        "items": snapshot.items,
        "is_owner": snapshot.link.owner_id == request.user.pk,
    }
    return render(request, "sharing/shared.html", context)
