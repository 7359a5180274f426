"""URLs of the usage reports: each person's own, (staff) every user's, and each group's
(staff, and the group's managers)."""

from django.urls import path

from . import views

urlpatterns = [
    path("usage/", views.usage_mine, name="usage_mine"),
    path("usage/export.csv", views.usage_mine_csv, name="usage_mine_csv"),
    path("usage/all/", views.usage_all, name="usage_all"),
    path("usage/all/export.csv", views.usage_all_csv, name="usage_all_csv"),
    path("usage/all/<int:user_id>/", views.usage_user, name="usage_user"),
    path("usage/groups/", views.usage_groups, name="usage_groups"),
    path("usage/groups/export.csv", views.usage_groups_csv, name="usage_groups_csv"),
    path("usage/groups/<int:group_id>/", views.usage_group, name="usage_group"),
    path("usage/groups/<int:group_id>/export.csv", views.usage_group_csv, name="usage_group_csv"),
]
