"""A person's own export and import of their chats: one conversation as JSON or Markdown,
all of them as a streamed ZIP, and the import page. Every id goes through the chat's
ownership lookup (404 for anyone else's)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_http_methods

from conversations.chat.models import Conversation
from conversations.chat.selectors import get_conversation_for_user

from . import archive, exports, selectors, services
from .document import max_bytes
from .forms import ImportForm

KINDS = {
    "json": ("json", "application/json; charset=utf-8", exports.conversation_json),
    "md": ("md", "text/markdown; charset=utf-8", exports.conversation_markdown),
}


def _attachment(response: HttpResponse, filename: str) -> HttpResponse:
    response["Content-Disposition"] = content_disposition_header(True, filename)
    # A person's own chats: never kept by a shared cache, nor on disk by the browser.
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_GET
def conversation_export(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = get_conversation_for_user(request.user, pk)
    kind = KINDS.get(request.GET.get("format", "json"))
    if kind is None:
        return HttpResponseBadRequest(_("Unknown export format."))
    extension, content_type, write = kind
    text = write(selectors.conversation_for_export(conversation))
    response = HttpResponse(text, content_type=content_type)
    return _attachment(response, f"{exports.file_stem(conversation)}.{extension}")


@login_required
@require_GET
def chats_export(request: HttpRequest) -> HttpResponse:
    """Every conversation of the person (archived ones too) in one ZIP, streamed."""
    response = StreamingHttpResponse(
        archive.chats_zip(request.user.pk), content_type="application/zip"
    )
    return _attachment(response, f"chats-{timezone.localdate():%Y-%m-%d}.zip")


@login_required
@require_http_methods(["GET", "POST"])
def chats_import(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = ImportForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                made = services.conversations_import(
                    owner=request.user, upload=form.cleaned_data["file"]
                )
            except ValidationError as error:
                form.add_error("file", error)
            else:
                return _imported(request, made)
    else:
        form = ImportForm()
    context = {"form": form, "max_bytes": max_bytes()}
    return render(request, "portability/import.html", context, status=400 if form.errors else 200)


def _imported(request: HttpRequest, made: list[Conversation]) -> HttpResponse:
    count = len(made)
    messages.success(
        request,
        ngettext("Imported %(count)d conversation.", "Imported %(count)d conversations.", count)
        % {"count": count},
    )
    if count == 1:
        return redirect("conversation_detail", pk=made[0].pk)
    return redirect("chat_home")
