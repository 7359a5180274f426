"""The staff-reading rule (chat/reading.py) applied to admin pages that show chat content:
review's transcripts, messages and calls, sharing's links. Such a page answers 403 where
staff may not read, and lists name rows by number there."""

from __future__ import annotations

from django import forms
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.utils.html import format_html
from django.utils.text import capfirst
from django.utils.translation import gettext as _

from . import reading as policy


class ReadingPolicyMixin:
    """A page of chat content opens only while the site's policy lets staff read it."""

    def may_read(self, obj) -> bool:
        raise NotImplementedError

    def get_object(self, request, object_id, from_field=None):
        # The change, delete and history pages all fetch their object here, and each
        # shows content (a transcript, a message, a request, or the title as heading).
        obj = super().get_object(request, object_id, from_field)
        if obj is not None and not self.may_read(obj):
            raise PermissionDenied
        return obj

    def get_list_display_links(self, request, list_display):
        if policy.staff_reading() == policy.StaffReading.NONE:
            return None  # every page behind a link would answer 403
        return super().get_list_display_links(request, list_display)

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        changelist.search_help_text = self.search_help()
        return changelist

    def search_help(self) -> str:
        return self.search_help_text

    def row_name(self, obj) -> str:
        """How a list names a row where it cannot show it (a checkbox's label)."""
        return str(obj)

    def action_checkbox(self, obj):
        # Django's labels each row's checkbox with str(obj): a title, or a message's words.
        attrs = {
            "class": "action-select",
            "aria-label": format_html(
                _("Select this object for an action - {}"), self.row_name(obj)
            ),
        }
        checkbox = forms.CheckboxInput(attrs, lambda value: False)
        return checkbox.render(helpers.ACTION_CHECKBOX_NAME, str(obj.pk))

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        if not policy.reads_all():
            # The confirmation would name every message and title: numbers say enough.
            deleted = [
                format_html("{}: #{}", capfirst(obj._meta.verbose_name), obj.pk) for obj in objs
            ]
        return deleted, counts, perms_needed, protected
