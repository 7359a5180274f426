"""Site URLs: admin, accounts and the chat app. Static files are WhiteNoise's (middleware),
and /healthz and /readyz are answered by chatsite.health before any URL is looked up."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from conversations import views as chat_views

urlpatterns = [
    # Before the admin's own URLs: its log-in under the failed log-in limits (429).
    path("admin/login/", chat_views.admin_login),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("accounts/login/", chat_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", chat_views.signup, name="signup"),
    path("accounts/signup/pending/", chat_views.signup_pending, name="signup_pending"),
    path("", include("conversations.urls")),
]

# Too large a request (a 10 MB paste) says so instead of Django's bare "Bad Request".
handler400 = "chatsite.errors.bad_request"
