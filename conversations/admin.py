"""The admin, each domain's own pages: Django looks for them here."""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from conversations.accounts import admin as accounts_admin
from conversations.api import admin as api_admin
from conversations.billing import admin as billing_admin
from conversations.privacy import admin as privacy_admin
from conversations.providers import admin as providers_admin
from conversations.review import admin as review_admin
from conversations.sharing import admin as sharing_admin

admin.site.site_header = _("chatsite administration")
admin.site.site_title = _("chatsite admin")
# The index and the breadcrumbs lead everywhere; the sidebar took a quarter of a laptop's
# width from the lists (the conversation list's columns were squeezed one word a line).
admin.site.enable_nav_sidebar = False

__all__ = [
    "accounts_admin",
    "api_admin",
    "billing_admin",
    "privacy_admin",
    "providers_admin",
    "review_admin",
    "sharing_admin",
]
