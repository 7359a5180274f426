"""The admin app with the site's own AdminSite (chatsite.admin.SiteAdmin) as `admin.site`."""

from django.contrib.admin.apps import AdminConfig


class SiteAdminConfig(AdminConfig):
    default_site = "chatsite.admin.SiteAdmin"
