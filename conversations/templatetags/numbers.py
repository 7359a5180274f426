"""Numbers as the page's language writes them: `{{ value|grouped }}` is 12,804 (grouped by
thousands), for counts of tokens and requests. CSV files keep plain figures."""

from django import template

from conversations.shared.numbers import grouped as group

register = template.Library()


@register.filter
def grouped(value):
    if isinstance(value, bool) or not isinstance(value, int):
        return value
    return group(value)
