"""Turning message text into HTML: model output as sanitized Markdown, user text as plain text.

Model output is untrusted. Markdown is parsed with raw HTML disabled (so `<script>` in a reply
is escaped as text), code blocks are highlighted server-side by Pygments with CSS classes
(`static/css/pygments.css`), and the result goes through nh3 with a strict allowlist.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import nh3
from django.utils import translation
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

# Longer code blocks are shown unhighlighted: Pygments time grows with size.
MAX_HIGHLIGHT_CHARS = 100_000

TAGS = {
    "a", "abbr", "b", "blockquote", "br", "button", "code", "del", "div", "em", "h1", "h2",
    "h3", "h4", "h5", "h6", "hr", "i", "kbd", "li", "ol", "p", "pre", "s", "span", "strong",
    "sub", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
}
PYGMENTS_CLASSES = {name for name in STANDARD_TYPES.values() if name}
# Table columns' alignment as classes: the CSP allows no style="" attributes.
ALIGN_CLASSES = {"align-left", "align-center", "align-right"}
ALLOWED_CLASSES = {
    "span": PYGMENTS_CLASSES | {"codeblock-lang"},
    "pre": {"highlight"},
    "div": {"codeblock", "codeblock-bar"},
    "button": {"copy-code"},
    "th": ALIGN_CLASSES,
    "td": ALIGN_CLASSES,
}


def _fence(self, tokens: Sequence[Token], idx: int, options, env) -> str:
    """A fenced code block: a bar with the language and a copy button, then the code."""
    token = tokens[idx]
    language = token.info.strip().split(maxsplit=1)[0] if token.info.strip() else ""
    return _code_block(token.content, language)


def _code_inline_block(self, tokens: Sequence[Token], idx: int, options, env) -> str:
    return _code_block(tokens[idx].content, "")


def _code_block(code: str, language: str) -> str:
    lexer = None
    if language and len(code) <= MAX_HIGHLIGHT_CHARS:
        try:
            lexer = get_lexer_by_name(language, stripnl=False, ensurenl=False)
        except ClassNotFound:
            lexer = None
    body = highlight(code, lexer, _formatter()) if lexer else escapeHtml(code)
    label = f'<span class="codeblock-lang">{escapeHtml(language)}</span>'
    copy = escapeHtml(_("Copy"))
    return (
        '<div class="codeblock"><div class="codeblock-bar">'
        f'{label}<button class="copy-code">{copy}</button></div>'
        f'<pre class="highlight"><code>{body}</code></pre></div>\n'
    )


def _image(self, tokens: Sequence[Token], idx: int, options, env) -> str:
    # Images from model output would load third-party URLs: show them as links instead.
    token = tokens[idx]
    src = escapeHtml(str(token.attrGet("src") or ""))
    alt = escapeHtml(self.renderInlineAsText(token.children or [], options, env) or src)
    return f'<a href="{src}">{alt}</a>'


def _alignment_classes(state) -> None:
    """markdown-it aligns table cells with style="text-align:x"; make it class="align-x"."""
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and token.attrs.get("style"):
            alignment = str(token.attrs.pop("style")).removeprefix("text-align:")
            token.attrSet("class", f"align-{alignment}")


@cache
def _formatter() -> HtmlFormatter:
    return HtmlFormatter(nowrap=True)


@cache
def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.add_render_rule("fence", _fence)
    md.add_render_rule("code_block", _code_inline_block)
    md.add_render_rule("image", _image)
    md.core.ruler.push("alignment_classes", _alignment_classes)
    return md


def render_markdown(text: str) -> SafeString:
    """Model output as sanitized HTML."""
    html = _markdown().render(text or "")
    clean = nh3.clean(
        html,
        tags=TAGS,
        attributes=ATTRIBUTES,
        allowed_classes=ALLOWED_CLASSES,
        link_rel="noopener noreferrer nofollow",
        url_schemes={"http", "https", "mailto"},
        set_tag_attribute_values={"button": {"type": "button"}},
    )
    return mark_safe(clean)  # noqa: S308 - sanitized by nh3 just above


COPY_BUTTON = '<button class="copy-code" type="button">{}</button>'


def render_markdown_for_storage(text: str) -> str:
    """Sanitized HTML to keep with a message: rendered once, in English; `localize` puts
    the reader's language into it when it is shown."""
    with translation.override("en"):
        return str(render_markdown(text))


def localize(stored_html: str) -> SafeString:
    """Stored HTML (from render_markdown_for_storage) in the active language."""
    label = _("Copy")
    if label != "Copy":
        stored_html = stored_html.replace(
            COPY_BUTTON.format("Copy"), COPY_BUTTON.format(escapeHtml(label))
        )
    return mark_safe(stored_html)  # noqa: S308 - sanitized before it was stored


def render_plain(text: str) -> SafeString:
    """User text as escaped plain text, keeping its line breaks."""
    escaped = escape(text or "").replace("\r\n", "\n").replace("\n", "<br>")
    return mark_safe(escaped)  # noqa: S308 - escaped just above
