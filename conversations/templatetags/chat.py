"""Template tags of the chat page: message text as HTML, a reply's event stream URL, and
the few inline SVG icons."""

import functools
from datetime import UTC
from typing import NamedTuple

from django import template
from django.conf import settings
from django.urls import reverse
from django.utils import translation
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from conversations.chat import live
from conversations.chat.models import Message
from conversations.providers import catalog
from conversations.shared.rendering import render_markdown, render_plain
from conversations.upstream.protocol import split_reasoning

register = template.Library()

# Stroke icons (24x24, currentColor), decorative: each sits beside a text label.
ICONS = {
    "plus": '<path d="M12 5v14M5 12h14"/>',
    "menu": '<path d="M4 6h16M4 12h16M4 18h16"/>',
    "edit": '<path d="M4 20h4L19 9l-4-4L4 16v4z"/><path d="M14 6l4 4"/>',
    "trash": '<path d="M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3"/>',
    "pin": '<path d="M9 4h6l-1 6 4 4H6l4-4-1-6z"/><path d="M12 14v6"/>',
    "clock": '<circle cx="12" cy="12" r="8"/><path d="M12 8v4l3 2"/>',
    "more": '<circle cx="5" cy="12" r="1"/><circle cx="12" cy="12" r="1"/>'
    '<circle cx="19" cy="12" r="1"/>',
    "sliders": '<path d="M4 6h10M18 6h2M4 12h4M12 12h8M4 18h12M20 18h0"/>'
    '<circle cx="16" cy="6" r="2"/><circle cx="10" cy="12" r="2"/><circle cx="18" cy="18" r="2"/>',
}


@register.simple_tag
def model_label(conversation) -> str:
    """The conversation's model as the Model select names it, with its provider's name
    when it is not the environment's own ("Local 4.1 · Lab")."""
    offer = catalog.find(conversation.provider_id, conversation.model)
    if offer is None:
        return conversation.model
    if offer.provider_id is None:
        return offer.label
    return f"{offer.label} · {offer.provider_name}"


@register.simple_tag
def markdown(text: str) -> SafeString:
    return render_markdown(text)


@register.simple_tag
def plain(text: str) -> SafeString:
    return render_plain(text)


class LiveParts(NamedTuple):
    reasoning: str
    answer: str


@register.simple_tag
def live_parts(choices, index: int) -> LiveParts:
    """The reasoning and the answer so far of choice `index` of a reply being written: a
    streaming row holds its tagged text (reasoning in a leading <think> block), an ended
    one each part in its own column."""
    for choice in choices:
        if choice.choice_index == index:
            if choice.status == Message.Status.STREAMING:
                return LiveParts(*split_reasoning(choice.content))
            return LiveParts(choice.reasoning, choice.content)
    return LiveParts("", "")


@register.simple_tag
def stamp(moment) -> SafeString:
    """When a message was written: app.js shows it as "5 minutes ago" with the full date,
    in the page's language and the reader's time zone, on hover (without script, the UTC
    time). Made here, not by the date filter: a 200-message page has 200 of them, and
    Django's localized date formatting was a fifth of its time."""
    # Digits and punctuation only: nothing to escape.
    return mark_safe(  # noqa: S308
        f'<time class="stamp" datetime="{moment.isoformat(timespec="seconds")}">'
        f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC</time>"
    )


@register.simple_tag
def reply_tokens(usage: dict | None) -> SafeString:
    """A reply's tokens: the numbers here, the words ("1,234 tokens", prompt + completion
    in the tooltip) from app.js in the page's language (`token_texts`): translating them
    here for each of a long page's replies cost more than the rest of the reply."""
    if not usage:
        return SafeString("")
    # Integers only: nothing to escape.
    return mark_safe(  # noqa: S308
        f'<span class="tokens" tabindex="0" data-prompt="{int(usage["prompt"])}" '
        f'data-completion="{int(usage["completion"])}">{int(usage["total"])}</span>'
    )


# --- Under each message: its versions and its actions. Made here, not in the template:
# a long page has one set per message, and a dozen template nodes and translations each
# had made the 200-message page a third slower. URLs are the conversation's messages URL
# and the message's id; labels are escaped, everything else is digits. ---


@functools.cache
def _labels(language: str) -> dict[str, str]:
    """The actions' words in `language`, escaped, looked up once: gettext for each message
    of a long page was most of what the actions cost."""
    with translation.override(language):
        return {
            key: escape(text)
            for key, text in {
                "previous": _("Previous version"),
                "next": _("Next version"),
                "versions": _("Versions"),
                "copy": _("Copy"),
                "edit": _("Edit"),
                "regenerate": _("Regenerate"),
                "message": _("Your message"),
                "reply": _("Reply"),
            }.items()
        }


def _words(context) -> dict[str, str]:
    """The words of this page's language, found once per page (asking for the language
    costs a context-local lookup each time)."""
    words = context.render_context.get(_labels)
    if words is None:
        words = _labels(translation.get_language() or settings.LANGUAGE_CODE)
        context.render_context[_labels] = words
    return words


def _versions(words, conversation, anchor, versions) -> str:
    """ "‹ 2 / 3 ›" for a turn with several versions; its buttons submit the page's one
    action form (#message-action) to the version switch of `anchor` (in the version
    shown). Their ids are the turn's, so htmx gives the focus back after a switch."""
    if not versions.several:
        return ""
    url = f"{conversation.messages_url}{int(anchor.pk)}/versions/"
    group = int(anchor.parent_id) if anchor.parent_id else "root"
    buttons = []
    for go, there in (("previous", versions.has_previous), ("next", versions.has_next)):
        label = words[go]
        disabled = "" if there else ' aria-disabled="true"'
        arrow = "‹" if go == "previous" else "›"
        buttons.append(
            f'<button type="submit" form="message-action" formaction="{url}" name="go" '
            f'value="{go}" class="icon-button version-step" id="versions-{group}-{go}" '
            f'aria-label="{label}" title="{label}"'
            f"{disabled}>{arrow}</button>"
        )
    number, count = int(versions.number), int(versions.count)
    spoken = escape(_("Version %(number)s of %(total)s") % {"number": number, "total": count})
    return (
        f'<span class="versions" role="group" aria-label="{words["versions"]}">'
        f'{buttons[0]}<span class="versions-count"><span aria-hidden="true">{number} / {count}'
        f'</span><span class="visually-hidden">{spoken}</span></span>{buttons[1]}</span>'
    )


def _copy(words, conversation, message) -> str:
    # Its link is the text itself (where it leads without script); app.js copies it.
    return (
        f'<a class="action action-copy" href="{conversation.messages_url}{int(message.pk)}'
        f'/source/">{words["copy"]}</a>'
    )


@register.simple_tag(takes_context=True)
def message_actions(context, conversation, message) -> SafeString:
    """A sent message's versions, Copy and Edit (the edit form in its place)."""
    words = _words(context)
    edit = (
        f'<a class="action action-edit" href="{conversation.messages_url}{int(message.pk)}'
        f'/edit/">{words["edit"]}</a>'
    )
    return mark_safe(  # noqa: S308 - escaped labels, digits and our own URLs
        f'<div class="message-actions" role="group" aria-label="{words["message"]}">'
        f"{_versions(words, conversation, message, message.versions)}"
        f"{_copy(words, conversation, message)}"
        f"{edit}</div>"
    )


@register.simple_tag(takes_context=True)
def reply_actions(context, conversation, reply) -> SafeString:
    """A reply's versions, Copy (each choice has its own where there are several) and
    Regenerate."""
    first = reply.first
    words = _words(context)
    # type="submit" written out: htmx only follows `formaction` on a button that says so.
    regenerate = (
        f'<button type="submit" form="message-action" formaction="{conversation.messages_url}'
        f'{int(first.pk)}/regenerate/" class="action action-redo">'
        f"{words['regenerate']}</button>"
    )
    copy = "" if reply.has_choices else _copy(words, conversation, first)
    return mark_safe(  # noqa: S308 - escaped labels, digits and our own URLs
        f'<div class="message-actions" role="group" aria-label="{words["reply"]}">'
        f"{_versions(words, conversation, first, reply.versions)}{copy}{regenerate}</div>"
    )


@register.simple_tag(takes_context=True)
def choice_copy(context, conversation, choice) -> SafeString:
    return mark_safe(_copy(_words(context), conversation, choice))  # noqa: S308 - as above


@register.simple_tag
def token_texts() -> SafeString:
    """The words app.js puts around a reply's token counts, once per page."""
    return format_html(
        'data-token-one="{}" data-token-other="{}" data-token-detail="{}"',
        ngettext("%(total)s token", "%(total)s tokens", 1),
        ngettext("%(total)s token", "%(total)s tokens", 2),
        _("%(prompt)s prompt + %(completion)s completion tokens"),
    )


@register.simple_tag(takes_context=True)
def live_events_url(context, conversation, completion) -> str:
    """The reply's event stream, with the token that lets chat.live serve it ahead of
    Django for this user, session and language."""
    url = reverse("completion_events", args=[conversation.pk, completion.pk])
    request = context.get("request")
    if not settings.LIVE_EVENTS_APP or request is None:
        return url
    token = live.token_for(
        user_id=request.user.pk,
        completion_id=completion.pk,
        session_key=request.session.session_key,
        language=translation.get_language(),
    )
    return f"{url}?t={token}"


@register.simple_tag
def icon(name: str) -> SafeString:
    return format_html(
        '<svg class="icon" viewBox="0 0 24 24" width="20" height="20" fill="none" '
        'stroke="currentColor" stroke-width="1.8" stroke-linecap="round" '
        'stroke-linejoin="round" aria-hidden="true" focusable="false">{}</svg>',
        mark_safe(ICONS[name]),  # noqa: S308 - constant markup above
    )
