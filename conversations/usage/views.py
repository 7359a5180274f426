"""Usage pages: a user's own usage, (staff only) every user's, and each group's for staff
and the group's managers, with CSV exports."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.paginator import Page, Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.views.decorators.http import require_GET

from conversations.billing import budgets

from . import charts, reports, selectors
from .forms import UsageRangeForm, range_form
from .tables import METRIC_COLUMNS, NUMERIC, columns, cost_cell, csv_response, table


def _bad_range(form: UsageRangeForm) -> HttpResponse:
    message = " ".join(str(error) for errors in form.errors.values() for error in errors)
    return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")


def _range_query(form: UsageRangeForm, **extra: str) -> dict[str, str]:
    data = form.cleaned_data
    return {"start": data["start"].isoformat(), "end": data["end"].isoformat(), **extra}


DAY_KEYS = ["day", *METRIC_COLUMNS]
MODEL_KEYS = ["model", "provider", "source", *METRIC_COLUMNS]
GROUP_KEYS = ["group", "members", *METRIC_COLUMNS]
MEMBER_KEYS = ["username", *METRIC_COLUMNS]
GROUPS_PER_PAGE = MEMBERS_PER_PAGE = 50


def _user_context(user_id: int, form: UsageRangeForm) -> dict[str, Any]:
    """Totals, chart and the per-day and per-model tables of one user."""
    start, end = form.cleaned_data["start"], form.cleaned_data["end"]
    return _drilldown_context(reports.user_drilldown(user_id, start, end), form)


def _drilldown_context(drill: dict[str, Any], form: UsageRangeForm) -> dict[str, Any]:
    """Totals, chart and the per-day and per-model tables of a drill-down (a user's or a
    group's)."""
    start, end = form.cleaned_data["start"], form.cleaned_data["end"]
    return {
        "start": start,
        "end": end,
        "summary": drill["summary"],
        "summary_cost": cost_cell(drill["summary"]),
        # The page shows the one that fits the window (usage.css).
        "chart": charts.tokens_per_day_svg(drill["days"])
        + charts.tokens_per_day_svg(drill["days"], narrow=True),
        "day_columns": columns(DAY_KEYS),
        "day_rows": table(drill["days"], DAY_KEYS, grouped=True),
        "model_columns": columns(MODEL_KEYS),
        "model_rows": table(drill["models"], MODEL_KEYS, grouped=True),
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
        "group_budgets": budgets.group_budget_statuses(request.user.pk),
        "numeric_keys": NUMERIC,
        # The header's "Group usage" link (base.html): asked here, not on every page.
        "manages_groups": selectors.manages_groups(request.user),
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
        keys, rows = MODEL_KEYS, reports.per_model(request.user.pk, start, end)
    else:
        keys, rows = DAY_KEYS, reports.per_day(request.user.pk, start, end)
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


# --- Groups: staff see every group, a manager the groups they manage ---


def _pages(page: Page) -> list:
    return list(page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1))


@login_required
@require_GET
def usage_groups(request: HttpRequest) -> HttpResponse:
    groups = Paginator(selectors.visible_groups(request.user), GROUPS_PER_PAGE)
    # Not staff and no group to manage: the page does not exist for them (404, not 403).
    if not request.user.is_staff and not groups.count:
        raise Http404
    form = range_form(request)
    context: dict[str, Any] = {"form": form, "numeric_keys": NUMERIC, "manages_groups": True}
    if form.is_valid():
        start, end = form.cleaned_data["start"], form.cleaned_data["end"]
        page = groups.get_page(request.GET.get("page"))
        rows = reports.group_rows(start, end, page.object_list)
        query = urlencode(_range_query(form))
        context |= {
            "start": start,
            "end": end,
            "page": page,
            "page_range": _pages(page),
            "columns": columns(GROUP_KEYS),
            "rows": table(rows, GROUP_KEYS, grouped=True),
            "range_query": query,
        }
    return render(request, "usage/groups.html", context)


@login_required
@require_GET
def usage_groups_csv(request: HttpRequest) -> HttpResponse:
    groups = list(selectors.visible_groups(request.user))
    if not request.user.is_staff and not groups:
        raise Http404
    form = range_form(request)
    if not form.is_valid():
        return _bad_range(form)
    start, end = form.cleaned_data["start"], form.cleaned_data["end"]
    rows = reports.group_rows(start, end, groups)
    return csv_response(f"usage-groups-{start}-{end}.csv", GROUP_KEYS, rows)


@login_required
@require_GET
def usage_group(request: HttpRequest, group_id: int) -> HttpResponse:
    group = selectors.get_group_for_user(request.user, group_id)
    form = range_form(request)
    context: dict[str, Any] = {
        "form": form,
        "group": group,
        "numeric_keys": NUMERIC,
        "manages_groups": True,
        # Only staff have the drill-down to a person's own report.
        "user_links": request.user.is_staff,
    }
    if form.is_valid():
        start, end = form.cleaned_data["start"], form.cleaned_data["end"]
        context |= _drilldown_context(reports.group_drilldown(group.pk, start, end), form)
        members = Paginator(reports.group_members(group.pk), MEMBERS_PER_PAGE)
        page = members.get_page(request.GET.get("page"))
        member_rows = reports.per_member(group.pk, start, end, list(page.object_list))
        range_query = _range_query(form)
        context |= {
            "page": page,
            "page_range": _pages(page),
            "member_columns": columns(MEMBER_KEYS),
            "member_rows": table(member_rows, MEMBER_KEYS, grouped=True),
            "range_query": urlencode(range_query),
            "csv_days_query": urlencode({**range_query, "group": "day"}),
            "csv_models_query": urlencode({**range_query, "group": "model"}),
            "csv_members_query": urlencode({**range_query, "group": "member"}),
        }
    return render(request, "usage/group.html", context)


@login_required
@require_GET
def usage_group_csv(request: HttpRequest, group_id: int) -> HttpResponse:
    group = selectors.get_group_for_user(request.user, group_id)
    form = range_form(request)
    if not form.is_valid():
        return _bad_range(form)
    start, end = form.cleaned_data["start"], form.cleaned_data["end"]
    kind = request.GET.get("group")
    if kind == "model":
        keys, rows = MODEL_KEYS, reports.per_model(None, start, end, group_id=group.pk)
    elif kind == "member":
        keys, rows = MEMBER_KEYS, reports.per_member(group.pk, start, end)
    else:
        kind = "day"
        keys, rows = DAY_KEYS, reports.per_day(None, start, end, group_id=group.pk)
    return csv_response(f"usage-group-{group.pk}-{kind}s-{start}-{end}.csv", keys, rows)
