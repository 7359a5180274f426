"""URLs of signing up and logging in (with a password or single sign-on), the admin's
log-in too (chatsite/urls.py puts these ahead of the admin's own URLs)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from . import oidc, views

urlpatterns = [
    path("admin/login/", views.admin_login),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", views.signup, name="signup"),
    path("accounts/signup/pending/", views.signup_pending, name="signup_pending"),
    # Single sign-on (OpenID Connect): 404 while it is off.
    path("accounts/oidc/login/", oidc.LoginStartView.as_view(), name="oidc_login"),
    path("accounts/oidc/callback/", oidc.CallbackView.as_view(), name="oidc_callback"),
    path("theme/", views.theme_set, name="theme_set"),
]
