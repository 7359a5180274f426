"""The chat pages: the chat page and the htmx partials it swaps in.

Views stay thin (form -> service -> render). Every id in a URL goes through an ownership
helper in `selectors` that answers 404 for other users. htmx requests get a named partial
of `conversations/chat.html`; plain form posts redirect back to the page (PRG).
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HTMX_STOP_POLLING

from conversations.accounts.selectors import site_settings
from conversations.billing.budgets import BudgetExceeded
from conversations.shared.ratelimits import RateLimited

from . import replies, selectors
from .forms import MessageForm, RenameForm, SettingsForm, TemporaryForm, ToggleForm
from .models import Conversation, Message
from .services import conversations as services
from .services import versions

TEMPLATE = "conversations/chat.html"
# Set in the session while its owner has a chat to delete when they leave it: the pages
# they open next look for such chats only then (no query on every page otherwise).
LEAVING = "temporary_leave"


def _partial(name: str) -> str:
    return f"{TEMPLATE}#{name}"


def _messages_of(error: ValidationError) -> list[str]:
    return [str(m) for m in error.messages]


def _page(
    request: HttpRequest,
    conversation: Conversation | None = None,
    *,
    sidebar_page: int = 1,
    status: int = 200,
    **forms,
) -> HttpResponse:
    """The whole chat page, for one conversation or none (the home page)."""
    context = {
        "sidebar": selectors.sidebar_conversations(request.user, sidebar_page),
        "conversation": conversation,
        "message_form": forms.get("message_form") or MessageForm(),
    }
    if conversation is not None:
        context |= {
            # Whether the menu offers a share link (the site's setting, read through the cache).
            "sharing_enabled": site_settings().sharing,
            "editing": forms.get("editing"),
            "edit_form": forms.get("edit_form"),
        }
        context |= {
            "transcript": selectors.transcript(conversation),
            "settings_form": forms.get("settings_form")
            or SettingsForm.for_conversation(conversation),
            "rename_form": forms.get("rename_form")
            or RenameForm(initial={"title": conversation.title}),
        }
    return render(request, TEMPLATE, context, status=status)


# --- Pages ---


@login_required
@require_GET
def chat_home(request: HttpRequest) -> HttpResponse:
    _leave_temporary(request)
    return _page(request)


def _leave_temporary(request: HttpRequest, staying: Conversation | None = None) -> None:
    """Delete the chats the person chose to have deleted once they left them."""
    if not request.session.get(LEAVING):
        return
    services.temporary_chats_leave(
        owner=request.user, staying_id=staying.pk if staying is not None else None
    )
    if staying is None or staying.temporary != Conversation.Temporary.LEAVE:
        del request.session[LEAVING]


@login_required
@require_GET
def conversation_list(request: HttpRequest) -> HttpResponse:
    """One page of the sidebar; htmx appends it in place of the "Load more" link."""
    page = selectors.page_number(request.GET.get("page"))
    if not request.htmx:
        return _page(request, sidebar_page=page)
    sidebar = selectors.sidebar_conversations(request.user, page)
    return render(request, _partial("sidebar-items"), {"sidebar": sidebar})


@login_required
@require_POST
def conversation_create(request: HttpRequest) -> HttpResponse:
    """Open a new chat (reusing an untouched one), and send a first message if given."""
    form = MessageForm(request.POST) if request.POST.get("content", "").strip() else None
    if form is not None and not form.is_valid():
        return _page(request, message_form=form, status=400)
    # The sidebar's "Temporary chat" button; anything else is a chat kept for good.
    temporary = TemporaryForm({"mode": request.POST.get("temporary", "")})
    mode = temporary.cleaned_data["mode"] if temporary.is_valid() else ""
    conversation = selectors.latest_empty_conversation(request.user)
    if conversation is None:
        conversation = services.conversation_create(owner=request.user, temporary=mode)
    elif conversation.temporary != mode:
        services.conversation_temporary(conversation=conversation, mode=mode)
    _leave_temporary(request, conversation)
    if mode == Conversation.Temporary.LEAVE:
        request.session[LEAVING] = True
    if form is not None:
        try:
            services.message_send(
                owner=request.user,
                conversation_id=conversation.pk,
                content=form.cleaned_data["content"],
            )
        except (RateLimited, services.Contended) as error:
            # Nothing was sent: the text stays in the composer.
            form.add_service_errors(error)
            return _page(request, conversation, message_form=form, status=_refusal_status(error))
        except ValidationError as error:
            for text in _messages_of(error):
                messages.error(request, text)
    return redirect("conversation_detail", pk=conversation.pk)


@login_required
@require_GET
def conversation_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The chat page; `?at=<message id>` (a search result) opens it on the branch that
    holds that message (the path moves there, as a switch of versions would)."""
    if (at := request.GET.get("at", "")).isdigit() and len(at) < 19:
        message = selectors.get_message_for_user(request.user, pk, int(at))
        try:
            versions.message_open(message=message)
        except services.ConversationBusy:
            messages.info(request, _("A reply is being written: the branch shown stays."))
    conversation = selectors.get_conversation_for_user(request.user, pk)
    _leave_temporary(request, conversation)
    return _page(request, conversation)


@login_required
@require_POST
def conversation_temporary(request: HttpRequest, pk: int) -> HttpResponse:
    """Keep a chat for good, or have it deleted a day after its last message or when its
    owner leaves it."""
    conversation = selectors.get_conversation_for_user(request.user, pk)
    form = TemporaryForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose how long the chat is kept."))
        return redirect("conversation_detail", pk=pk)
    mode = form.cleaned_data["mode"]
    services.conversation_temporary(conversation=conversation, mode=mode)
    if mode == Conversation.Temporary.LEAVE:
        request.session[LEAVING] = True
        messages.success(request, _("This chat is deleted when you open another one."))
    elif mode == Conversation.Temporary.DAY:
        messages.success(request, _("This chat is deleted a day after its last message."))
    else:
        messages.success(request, _("This chat is kept until you delete it."))
    return redirect("conversation_detail", pk=pk)


# --- Sending and replies ---


@login_required
@require_POST
def message_send(request: HttpRequest, pk: int) -> HttpResponse:
    """Send from the composer. The service looks the conversation up (404 for anyone
    else's) under its lock; only a refused send looks it up again, to redraw the composer."""
    form = MessageForm(request.POST)
    status = 400
    busy = False
    if form.is_valid():
        try:
            message, completion = services.message_send(
                owner=request.user, conversation_id=pk, content=form.cleaned_data["content"]
            )
        except (BudgetExceeded, services.ModelUnavailable) as error:
            # The message is saved but nothing was queued: show both.
            if not request.htmx:
                messages.error(request, " ".join(_messages_of(error)))
                return redirect("conversation_detail", pk=pk)
            return _sent(request, error.saved, send_error=" ".join(_messages_of(error)))
        except ValidationError as error:
            form.add_service_errors(error)
            status = _refusal_status(error)
            busy = isinstance(error, services.ConversationBusy)
        else:
            if not request.htmx:
                return redirect("conversation_detail", pk=pk)
            return _sent(request, message, completion=completion)
    conversation = selectors.get_conversation_for_user(request.user, pk)
    if request.htmx:
        # 200: htmx 2 does not swap 4xx answers, and the composer must show the error.
        context = {"conversation": conversation, "message_form": form, "busy_refused": busy}
        return render(request, _partial("composer"), context)
    return _page(request, conversation, message_form=form, status=status)


def _sent(request: HttpRequest, message: Message, **context) -> HttpResponse:
    """The composer again, and the sent message (and its pending reply) added to the page."""
    context |= {
        "conversation": message.conversation,
        "sent_message": message,
        "message_form": MessageForm(),
    }
    return render(request, _partial("sent"), context)


def _refusal_status(error: ValidationError) -> int:
    if isinstance(error, RateLimited):
        return 429
    if isinstance(error, services.Contended):
        return 503
    return 400


@login_required
@require_GET
def completion_poll(request: HttpRequest, pk: int, cid: int) -> HttpResponse:
    """The pending reply while the completion runs; the reply (or error) once it has ended,
    with status 286 so htmx stops polling."""
    completion = selectors.get_completion_for_user(request.user, pk, cid)
    conversation = completion.conversation
    if completion.is_active:
        if request.GET.get("live"):
            # The page is receiving the reply over SSE: nothing to swap until it ends.
            return HttpResponse(status=204)
        context = {
            "conversation": conversation,
            "completion": completion,
            "streamed": list(completion.messages.all()),
        }
        return render(request, _partial("pending"), context)
    return render(
        request, _partial("ended"), replies.ended_context(completion), status=HTMX_STOP_POLLING
    )


@login_required
@require_POST
def completion_retry(request: HttpRequest, pk: int, cid: int) -> HttpResponse:
    completion = selectors.get_completion_for_user(request.user, pk, cid)
    conversation = completion.conversation
    try:
        new = versions.completion_retry(completion=completion)
    except ValidationError as error:
        if not request.htmx:
            messages.error(request, " ".join(_messages_of(error)))
            return redirect("conversation_detail", pk=pk)
        context = {
            "conversation": conversation,
            "failed": completion,
            "retry_error": " ".join(_messages_of(error)),
        }
        return render(request, _partial("failed"), context)
    if not request.htmx:
        return redirect("conversation_detail", pk=pk)
    context = {"conversation": conversation, "completion": new, "streamed": []}
    return render(request, _partial("pending"), context)


# --- Versions: regenerate, edit, switch ---


def _transcript(request: HttpRequest, conversation: Conversation, **context) -> HttpResponse:
    """The transcript again (htmx swaps it into #messages): the path as it is now."""
    context |= {
        "conversation": conversation,
        "transcript": selectors.transcript(conversation),
        "oob_notice": True,  # a notice of an earlier refusal goes
    }
    response = render(request, _partial("transcript"), context)
    response["HX-Retarget"] = "#messages"
    response["HX-Reswap"] = "innerHTML"
    return response


def _refused(request: HttpRequest, pk: int, error: ValidationError) -> HttpResponse:
    """A refused change of versions: nothing changed; the reason in the chat's notice
    (htmx) or as a message on the page."""
    text = " ".join(_messages_of(error))
    if not request.htmx:
        messages.error(request, text)
        return redirect("conversation_detail", pk=pk)
    # 200: htmx 2 does not swap 4xx answers.
    response = render(request, _partial("notice"), {"notice": text})
    response["HX-Retarget"] = "#chat-notice"
    response["HX-Reswap"] = "innerHTML"
    return response


def _changed(request: HttpRequest, conversation: Conversation, **context) -> HttpResponse:
    if not request.htmx:
        return redirect("conversation_detail", pk=conversation.pk)
    return _transcript(request, conversation, **context)


@login_required
@require_POST
def choice_select(request: HttpRequest, pk: int, mid: int) -> HttpResponse:
    """ "Use this reply": the conversation goes on from this choice (and what followed it)."""
    message = selectors.get_message_for_user(request.user, pk, mid)
    try:
        versions.choice_select(message=message)
    except ValidationError as error:
        return _refused(request, pk, error)
    return _changed(request, message.conversation)


@login_required
@require_POST
def version_switch(request: HttpRequest, pk: int, mid: int) -> HttpResponse:
    """Show the previous or next version of this message's turn, and what followed it."""
    message = selectors.get_message_for_user(request.user, pk, mid)
    try:
        direction = versions.Direction(request.POST.get("go", ""))
    except ValueError:
        return _refused(request, pk, ValidationError(_("Choose the previous or next version.")))
    try:
        versions.version_switch(message=message, direction=direction)
    except ValidationError as error:
        return _refused(request, pk, error)
    # htmx gives the focus back to the button pressed (its id is the turn's, in any version).
    return _changed(request, message.conversation)


@login_required
@require_POST
def reply_regenerate(request: HttpRequest, pk: int, mid: int) -> HttpResponse:
    """A new version of this reply, written with the conversation's settings as they are."""
    message = selectors.get_message_for_user(request.user, pk, mid)
    try:
        versions.reply_regenerate(owner_id=request.user.pk, conversation_id=pk, message_id=mid)
    except ValidationError as error:
        return _refused(request, pk, error)
    return _changed(request, message.conversation)


@login_required
def message_edit(request: HttpRequest, pk: int, mid: int) -> HttpResponse:
    """GET: the message's edit form in its place. POST: send the edited text as a new
    version of the message (the old one stays); the conversation goes on from it."""
    message = selectors.get_message_for_user(request.user, pk, mid)
    if message.role != Message.Role.USER:
        raise Http404("Only your own messages can be edited")
    conversation = message.conversation
    if request.method == "GET":
        form = MessageForm(initial={"content": message.content})
        return _edit_form(request, message, form)
    if request.method != "POST":
        return HttpResponseNotAllowed(["GET", "POST"])
    form = MessageForm(request.POST)
    if not form.is_valid():
        return _edit_form(request, message, form, status=400)
    try:
        versions.message_edit(
            owner=request.user,
            conversation_id=pk,
            message_id=mid,
            content=form.cleaned_data["content"],
        )
    except (BudgetExceeded, services.ModelUnavailable) as error:
        # The new version is saved but no reply was asked for: show both.
        text = " ".join(_messages_of(error))
        if not request.htmx:
            messages.error(request, text)
            return redirect("conversation_detail", pk=pk)
        return _transcript(request, conversation, send_error=text)
    except ValidationError as error:
        form.add_service_errors(error)
        return _edit_form(request, message, form, status=_refusal_status(error))
    return _changed(request, conversation)


def _edit_form(
    request: HttpRequest, message: Message, form: MessageForm, *, status: int = 200
) -> HttpResponse:
    if request.htmx:
        # 200 whatever the error: htmx 2 does not swap 4xx answers.
        context = {"conversation": message.conversation, "message": message, "edit_form": form}
        return render(request, _partial("edit-form"), context)
    return _page(request, message.conversation, editing=message.pk, edit_form=form, status=status)


@login_required
@require_GET
def message_source(request: HttpRequest, pk: int, mid: int) -> HttpResponse:
    """The message as written (a reply's Markdown source), as plain text: what Copy puts
    on the clipboard, and where its link goes without JavaScript."""
    message = selectors.get_message_for_user(request.user, pk, mid)
    response = HttpResponse(message.content, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "private, no-store"
    return response


# --- Conversation settings, title, deletion ---


@login_required
@require_POST
def conversation_settings(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = selectors.get_conversation_for_user(request.user, pk)
    form = SettingsForm.for_conversation(conversation, request.POST)
    saved = False
    if form.is_valid():
        try:
            services.conversation_update(conversation=conversation, **form.cleaned_data)
            saved = True
        except ValidationError as error:
            form.add_service_errors(error)
    if saved and not request.htmx:
        messages.success(request, _("Settings saved."))
        return redirect("conversation_detail", pk=pk)
    if saved:
        form = SettingsForm.for_conversation(conversation)
    if not request.htmx:
        return _page(request, conversation, settings_form=form, status=400)
    context = {
        "conversation": conversation,
        "settings_form": form,
        "settings_saved": saved,
        "settings_open": True,
    }
    return render(request, _partial("settings"), context)


# How long after its first reply a conversation's page waits for the model's title.
TITLE_WAIT = timedelta(seconds=30)


@login_required
@require_GET
def conversation_title(request: HttpRequest, pk: int) -> HttpResponse:
    """The title as it is now, for the page that showed a first reply ending: htmx asks
    every 2 s until the title call has ended (the new title swapped in, out of band, in
    the header, the sidebar and the tab) and stops (286), or after TITLE_WAIT."""
    conversation = selectors.get_conversation_for_user(request.user, pk)
    if not selectors.title_call_pending(conversation, since=timezone.now() - TITLE_WAIT):
        context = {"conversation": conversation}
        return render(request, _partial("titled"), context, status=HTMX_STOP_POLLING)
    return HttpResponse(status=204)


@login_required
@require_POST
def conversation_rename(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = selectors.get_conversation_for_user(request.user, pk)
    form = RenameForm(request.POST)
    renamed = False
    if form.is_valid():
        try:
            services.conversation_rename(
                conversation=conversation, title=form.cleaned_data["title"]
            )
            renamed = True
        except ValidationError as error:
            form.add_error("title", error.messages)
    if renamed:
        if not request.htmx:
            return redirect("conversation_detail", pk=pk)
        context = {
            "conversation": conversation,
            "rename_form": RenameForm(initial={"title": conversation.title}),
            "renamed": True,
        }
        return render(request, _partial("title"), context)
    if not request.htmx:
        return _page(request, conversation, rename_form=form, status=400)
    context = {"conversation": conversation, "rename_form": form, "rename_open": True}
    return render(request, _partial("title"), context)


@login_required
@require_GET
def conversation_archived(request: HttpRequest) -> HttpResponse:
    """The archived conversations: out of the sidebar, still opened and searched."""
    page = selectors.page_number(request.GET.get("page"))
    context = {"archived": selectors.archived_conversations(request.user, page)}
    return render(request, "conversations/archived.html", context)


@login_required
@require_POST
def conversation_pin(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = selectors.get_conversation_for_user(request.user, pk)
    form = ToggleForm(request.POST)
    form.is_valid()  # a BooleanField that is not required is always valid
    services.conversation_pin(conversation=conversation, pinned=form.cleaned_data["on"])
    messages.success(
        request, _("Pinned to the top of the list.") if conversation.pinned_at else _("Unpinned.")
    )
    return redirect("conversation_detail", pk=pk)


@login_required
@require_POST
def conversation_archive(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = selectors.get_conversation_for_user(request.user, pk)
    form = ToggleForm(request.POST)
    form.is_valid()
    services.conversation_archive(conversation=conversation, archived=form.cleaned_data["on"])
    if conversation.archived_at:
        messages.success(request, _("Archived: it is in the Archived list, and search finds it."))
        return redirect("chat_home")
    messages.success(request, _("Back in your conversations."))
    return redirect("conversation_detail", pk=pk)


@login_required
@require_POST
def conversation_delete(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = selectors.get_conversation_for_user(request.user, pk)
    services.conversation_delete(conversation=conversation)
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = reverse("chat_home")
        return response
    return redirect("chat_home")
