"""Who may see which group's usage: staff see every group, a group's managers see theirs
(accounts.GroupManager), and nobody else sees any. Each lookup by id raises 404 for anyone
who may not see the group, as for an id that does not exist."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import Group
from django.db.models import Count, QuerySet
from django.shortcuts import get_object_or_404

from conversations.accounts.models import GroupManager


def visible_groups(user: AbstractBaseUser) -> QuerySet[Group]:
    """The groups whose usage `user` may see, A to Z, each with its `members` count."""
    groups = Group.objects.annotate(members=Count("user", distinct=True)).order_by("name", "pk")
    if user.is_staff:
        return groups
    # A subquery, not a join on managers: the count stays a count of members.
    return groups.filter(pk__in=GroupManager.objects.filter(user=user).values("group_id"))


def manages_groups(user: AbstractBaseUser) -> bool:
    """Whether `user` sees group usage at all (staff, or the manager of a group): one
    EXISTS query for a non-staff user, none for staff."""
    return user.is_staff or GroupManager.objects.filter(user=user).exists()


def get_group_for_user(user: AbstractBaseUser, group_id: int) -> Group:
    """The group (with its `members` count) if `user` may see its usage, else 404."""
    return get_object_or_404(visible_groups(user), pk=group_id)
