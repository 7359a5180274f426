"""Usage pages: a user's own usage, and (staff only) every user's, with CSV exports.

The page tables and the CSV files are written from the same list of cells
(`table`), so a downloaded row always reads exactly as it does on the page. CSV
headers stay English in every language, and the files start with a UTF-8 BOM so
spreadsheet programs keep Chinese text intact.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET

from . import budgets, charts, reports

MAX_RANGE_DAYS = 366
# Excel opens a CSV file as UTF-8 (Chinese names intact) only when it starts with this.
UTF8_BOM = "\ufeff"

# Column headers (key -> header); the same headers head the CSV files.
HEADERS = {
    "day": gettext_lazy("Day"),
    "username": gettext_lazy("User"),
    "model": gettext_lazy("Model"),
    "requests": gettext_lazy("Requests"),
    "failed": gettext_lazy("Failed"),
    "prompt_tokens": gettext_lazy("Prompt tokens"),
    "completion_tokens": gettext_lazy("Completion tokens"),
    "total_tokens": gettext_lazy("Total tokens"),
    "cost": gettext_lazy("Cost"),
    "currency": gettext_lazy("Currency"),
    "unpriced": gettext_lazy("Requests without a price"),
}
NUMERIC = {
    "requests",
    "failed",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "unpriced",
}
METRIC_COLUMNS = [*reports.METRICS, "currency", "unpriced"]


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


def cost_cell(row: dict[str, Any]) -> str:
    if row["mixed_currency"]:
        return _("several currencies")
    if row["cost"] is None:
        return _("no price")
    return reports.cost_text(row["cost"])


def cell(row: dict[str, Any], key: str) -> str:
    if key == "cost":
        return cost_cell(row)
    if key == "day":
        return row["day"].isoformat()
    return str(row[key])


@dataclass
class Column:
    key: str
    header: str
    numeric: bool
    sort_url: str = ""
    sorted: str = ""  # "ascending" / "descending" when the table is sorted by it


def table(rows: list[dict], keys: list[str]) -> list[dict[str, Any]]:
    """The cells of each row, as shown on the page and written to CSV."""
    return [
        {"user_id": row.get("user_id"), "cells": [(key, cell(row, key)) for key in keys]}
        for row in rows
    ]


def columns(keys: list[str], *, sort: dict[str, str] | None = None, order: str = "") -> list:
    """Column headers; with `sort` (key -> query string without order) they link to sorting."""
    result = []
    for key in keys:
        column = Column(key, str(HEADERS[key]), key in NUMERIC)
        if sort is not None and key in reports.ORDERS:
            current = order.removeprefix("-") == key
            descending = order.startswith("-")
            if current:
                column.sorted = "descending" if descending else "ascending"
            # Numbers sort biggest first on the first click; names A to Z.
            first = key if key in ("username", "model") else f"-{key}"
            target = (key if descending else f"-{key}") if current else first
            column.sort_url = "?" + urlencode({**sort, "order": target})
        result.append(column)
    return result


def csv_response(filename: str, keys: list[str], rows: list[dict]) -> HttpResponse:
    response = HttpResponse(UTF8_BOM, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    # Headers are stable English keys whatever the page's language; cells read as on the page.
    with translation.override(None):
        writer.writerow([str(HEADERS[key]) for key in keys])
    for row in table(rows, keys):
        writer.writerow([spreadsheet_safe(key, text) for key, text in row["cells"]])
    return response


def spreadsheet_safe(key: str, text: str) -> str:
    # A name such as "+cmd" would run as a formula in a spreadsheet; numbers are left alone.
    if key not in NUMERIC and text[:1] in ("=", "+", "-", "@"):
        return "'" + text
    return text


def _bad_range(form: UsageRangeForm) -> HttpResponse:
    message = " ".join(str(error) for errors in form.errors.values() for error in errors)
    return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")


def _range_query(form: UsageRangeForm, **extra: str) -> dict[str, str]:
    data = form.cleaned_data
    return {"start": data["start"].isoformat(), "end": data["end"].isoformat(), **extra}


def _user_context(user_id: int, form: UsageRangeForm) -> dict[str, Any]:
    """Totals, chart and the per-day and per-model tables of one user."""
    start, end = form.cleaned_data["start"], form.cleaned_data["end"]
    drill = reports.user_drilldown(user_id, start, end)
    day_keys, model_keys = ["day", *METRIC_COLUMNS], ["model", *METRIC_COLUMNS]
    return {
        "start": start,
        "end": end,
        "summary": drill["summary"],
        "summary_cost": cost_cell(drill["summary"]),
        "chart": charts.tokens_per_day_svg(drill["days"]),
        "day_columns": columns(day_keys),
        "day_rows": table(drill["days"], day_keys),
        "model_columns": columns(model_keys),
        "model_rows": table(drill["models"], model_keys),
    }


def _staff_only(request: HttpRequest) -> None:
    # Other users' numbers do not exist for non-staff: 404, not 403.
    if not request.user.is_staff:
        raise Http404


@login_required
@require_GET
def usage_mine(request: HttpRequest) -> HttpResponse:
    form = range_form(request)
    context: dict[str, Any] = {
        "form": form,
        "budget": budgets.budget_status(request.user.pk),
        "numeric_keys": NUMERIC,
    }
    if form.is_valid():
        context |= _user_context(request.user.pk, form)
        query = _range_query(form)
        context["csv_days_query"] = urlencode({**query, "group": "day"})
        context["csv_models_query"] = urlencode({**query, "group": "model"})
    return render(request, "usage/mine.html", context)


@login_required
@require_GET
def usage_mine_csv(request: HttpRequest) -> HttpResponse:
    form = range_form(request)
    if not form.is_valid():
        return _bad_range(form)
    start, end = form.cleaned_data["start"], form.cleaned_data["end"]
    if request.GET.get("group") == "model":
        keys, rows = ["model", *METRIC_COLUMNS], reports.per_model(request.user.pk, start, end)
    else:
        keys, rows = ["day", *METRIC_COLUMNS], reports.per_day(request.user.pk, start, end)
    group = "models" if keys[0] == "model" else "days"
    return csv_response(f"usage-{group}-{start}-{end}.csv", keys, rows)


def _all_users_rows(request: HttpRequest, form: UsageRangeForm) -> tuple[list, list[str], str]:
    by_model = request.GET.get("by") == "model"
    order = reports.clean_order(request.GET.get("order", ""), by_model=by_model)
    keys = ["username", *(["model"] if by_model else []), *METRIC_COLUMNS]
    start, end = form.cleaned_data["start"], form.cleaned_data["end"]
    return reports.all_users(start, end, by_model=by_model, order=order), keys, order


@login_required
@require_GET
def usage_all(request: HttpRequest) -> HttpResponse:
    _staff_only(request)
    form = range_form(request)
    by_model = request.GET.get("by") == "model"
    keep = {"by": "model"} if by_model else {}
    keep["order"] = reports.clean_order(request.GET.get("order", ""), by_model=by_model)
    context: dict[str, Any] = {"form": form, "keep": keep, "numeric_keys": NUMERIC}
    if form.is_valid():
        rows, keys, order = _all_users_rows(request, form)
        by = {"by": "model"} if "model" in keys else {}
        query = _range_query(form, **by)
        context |= {
            "start": form.cleaned_data["start"],
            "end": form.cleaned_data["end"],
            "by_model": bool(by),
            "order": order,
            "total": reports.combined(rows),
            "columns": columns(keys, sort=query, order=order),
            "rows": table(rows, keys),
            "csv_query": urlencode({**query, "order": order}),
            "toggle_query": urlencode(
                {**_range_query(form), "order": order, **({} if by else {"by": "model"})}
            ),
            "user_query": urlencode(_range_query(form)),
        }
        context["total_cost"] = cost_cell(context["total"])
    return render(request, "usage/all.html", context)


@login_required
@require_GET
def usage_all_csv(request: HttpRequest) -> HttpResponse:
    _staff_only(request)
    form = range_form(request)
    if not form.is_valid():
        return _bad_range(form)
    rows, keys, _order = _all_users_rows(request, form)
    start, end = form.cleaned_data["start"], form.cleaned_data["end"]
    group = "users-models" if "model" in keys else "users"
    return csv_response(f"usage-{group}-{start}-{end}.csv", keys, rows)


@login_required
@require_GET
def usage_user(request: HttpRequest, user_id: int) -> HttpResponse:
    _staff_only(request)
    subject = reports.report_user(user_id)
    if subject is None:
        raise Http404
    form = range_form(request)
    context: dict[str, Any] = {"form": form, "subject": subject, "numeric_keys": NUMERIC}
    if form.is_valid():
        context |= _user_context(subject.pk, form)
        context["budget"] = budgets.budget_status(subject.pk)
        context["back_query"] = urlencode(_range_query(form))
    return render(request, "usage/user.html", context)
