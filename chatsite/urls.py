"""Site URLs: the app's (conversations/urls.py), the admin and language switching. Static
files are WhiteNoise's (middleware), and /healthz and /readyz are answered by
chatsite.health before any URL is looked up."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    # First: the app's admin log-in (under the failed log-in limits, 429) comes before the
    # admin's own.
    path("", include("conversations.urls")),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
]

# Too large a request (a 10 MB paste) says so instead of Django's bare "Bad Request".
handler400 = "chatsite.errors.bad_request"
