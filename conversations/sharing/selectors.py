"""Reads of share links: the owner's own (one by id: 404 for anyone else's, and a page of
them), and what a link shows (its snapshot), each in a fixed number of queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from conversations.accounts.models import SiteSettings
from conversations.accounts.selectors import site_settings
from conversations.chat.models import Message
from conversations.chat.selectors import Reply
from conversations.chat.tree import Tree

from .models import ShareLink

LINKS_PAGE_SIZE = 50
# A token is 43 characters (models.share_token); anything much longer is not one.
MAX_TOKEN_LENGTH = 64


def get_share_link_for_user(user: AbstractBaseUser, pk: int) -> ShareLink:
    return get_object_or_404(ShareLink, pk=pk, owner_id=user.pk)


def share_links_for_user(user: AbstractBaseUser) -> QuerySet[ShareLink]:
    return ShareLink.objects.filter(owner_id=user.pk).order_by("-created_at", "-pk")


@dataclass
class LinksPage:
    links: list[ShareLink]
    page: int
    has_more: bool

    @property
    def previous_page(self) -> int | None:
        return self.page - 1 if self.page > 1 else None

    @property
    def next_page(self) -> int | None:
        return self.page + 1 if self.has_more else None


def share_links_page(user: AbstractBaseUser, page: int = 1) -> LinksPage:
    """One page of the user's links, newest first (one query); 404 past the last page."""
    page = max(1, page)
    start = (page - 1) * LINKS_PAGE_SIZE
    # One row more than a page tells whether there is a next page without a COUNT.
    rows = list(share_links_for_user(user)[start : start + LINKS_PAGE_SIZE + 1])
    if not rows and page > 1:
        raise Http404("No such page")
    return LinksPage(rows[:LINKS_PAGE_SIZE], page, len(rows) > LINKS_PAGE_SIZE)


class Node(NamedTuple):
    """What finding a path needs of a message (its text is not read)."""

    pk: int
    parent_id: int | None
    role: str
    completion_id: int | None
    choice_index: int | None
    is_selected: bool
    status: str


def message_tree(conversation_id: int) -> Tree:
    """The conversation's messages as a tree, without their text (one query)."""
    rows = (
        Message.objects.filter(conversation_id=conversation_id)
        .order_by("pk")
        .values_list(*Node._fields)
    )
    return Tree(Node(*row) for row in rows)


@dataclass
class Snapshot:
    """What a share link shows: the link (its title and date) and the shared path, root
    first: each user message, and each reply as a Reply of the one choice on the path."""

    link: ShareLink
    items: list[Message | Reply]


def shared_snapshot(token: str, *, site: SiteSettings | None = None) -> Snapshot:
    """The live link with this token and its path (three queries, whatever the number of
    messages and branches); 404 for an unknown or revoked token, a link whose owner's
    account is no longer active, and for every link while sharing is off on the site."""
    if not (site or site_settings()).sharing or len(token) > MAX_TOKEN_LENGTH:
        raise Http404("No such share link")
    try:
        link = ShareLink.objects.get(token=token, revoked_at__isnull=True, owner__is_active=True)
    except ShareLink.DoesNotExist:
        raise Http404("No such share link") from None
    # The path by parent from the leaf up: which version is selected now does not matter,
    # so switching branches (or anything written since) does not change what was shared.
    line = [node.pk for node in message_tree(link.conversation_id).lineage(link.leaf_id)]
    shown = Message.objects.filter(conversation_id=link.conversation_id, pk__in=line)
    found = {m.pk: m for m in shown}
    items: list[Message | Reply] = []
    for pk in line:
        message = found[pk]
        if message.role == Message.Role.ASSISTANT:
            items.append(Reply(position=message.position, choices=[message]))
        elif message.role == Message.Role.USER:
            items.append(message)
    return Snapshot(link=link, items=items)
