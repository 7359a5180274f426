"""The date range a usage report covers."""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from . import reports

MAX_RANGE_DAYS = 366


def _date_input() -> forms.DateInput:
    # <input type="date"> takes ISO dates whatever the language.
    return forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")


class UsageRangeForm(forms.Form):
    start = forms.DateField(label=gettext_lazy("From"), widget=_date_input())
    end = forms.DateField(label=gettext_lazy("To"), widget=_date_input())

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end:
            if end < start:
                self.add_error("end", _("The end date must not be before the start date."))
            elif (end - start).days + 1 > MAX_RANGE_DAYS:
                self.add_error(
                    "end",
                    _("Choose a range of at most %(days)s days.") % {"days": MAX_RANGE_DAYS},
                )
        return data


def range_form(request: HttpRequest) -> UsageRangeForm:
    """The date range from the query string; a missing or blank date means this month."""
    start, end = reports.default_range()
    data = {"start": start.isoformat(), "end": end.isoformat()}
    data |= {key: request.GET[key] for key in ("start", "end") if request.GET.get(key, "").strip()}
    return UsageRangeForm(data)
