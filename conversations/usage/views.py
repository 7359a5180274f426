"""Usage pages: a user's own usage, and (staff only) every user's, with CSV exports."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.views.decorators.http import require_GET

from conversations.billing import budgets

from . import charts, reports
from .forms import UsageRangeForm, range_form
from .tables import METRIC_COLUMNS, NUMERIC, columns, cost_cell, csv_response, table


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
    day_keys, model_keys = (
        ["day", *METRIC_COLUMNS],
        ["model", "provider", "source", *METRIC_COLUMNS],
    )
    return {
        "start": start,
        "end": end,
        "summary": drill["summary"],
        "summary_cost": cost_cell(drill["summary"]),
        # The page shows the one that fits the window (usage.css).
        "chart": charts.tokens_per_day_svg(drill["days"])
        + charts.tokens_per_day_svg(drill["days"], narrow=True),
        "day_columns": columns(day_keys),
        "day_rows": table(drill["days"], day_keys, grouped=True),
        "model_columns": columns(model_keys),
        "model_rows": table(drill["models"], model_keys, grouped=True),
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
        keys = ["model", "provider", "source", *METRIC_COLUMNS]
        rows = reports.per_model(request.user.pk, start, end)
    else:
        keys, rows = ["day", *METRIC_COLUMNS], reports.per_day(request.user.pk, start, end)
    group = "models" if keys[0] == "model" else "days"
    return csv_response(f"usage-{group}-{start}-{end}.csv", keys, rows)


def _all_users_rows(request: HttpRequest, form: UsageRangeForm) -> tuple[list, list[str], str]:
    by_model = request.GET.get("by") == "model"
    order = reports.clean_order(request.GET.get("order", ""), by_model=by_model)
    keys = ["username", *(["model", "provider"] if by_model else []), "source", *METRIC_COLUMNS]
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
            "rows": table(rows, keys, grouped=True),
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
