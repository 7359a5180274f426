"""Template tags of the chat page: message text as HTML, a reply's event stream URL, and
the few inline SVG icons."""

from datetime import UTC

from django import template
from django.conf import settings
from django.urls import reverse
from django.utils import translation
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from conversations.chat import live
from conversations.shared.rendering import render_markdown, render_plain

register = template.Library()

# Stroke icons (24x24, currentColor), decorative: each sits beside a text label.
ICONS = {
    "plus": '<path d="M12 5v14M5 12h14"/>',
    "menu": '<path d="M4 6h16M4 12h16M4 18h16"/>',
    "edit": '<path d="M4 20h4L19 9l-4-4L4 16v4z"/><path d="M14 6l4 4"/>',
    "trash": '<path d="M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3"/>',
    "sliders": '<path d="M4 6h10M18 6h2M4 12h4M12 12h8M4 18h12M20 18h0"/>'
    '<circle cx="16" cy="6" r="2"/><circle cx="10" cy="12" r="2"/><circle cx="18" cy="18" r="2"/>',
    "copy": '<rect x="9" y="9" width="11" height="11" rx="2"/><path d="M5 15V5a1 1 0 0 1 1-1h9"/>',
    "redo": '<path d="M20 12a8 8 0 1 1-2.3-5.6"/><path d="M20 4v5h-5"/>',
}


@register.simple_tag
def markdown(text: str) -> SafeString:
    return render_markdown(text)


@register.simple_tag
def plain(text: str) -> SafeString:
    return render_plain(text)


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
