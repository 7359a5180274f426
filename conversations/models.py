"""The app's models, each defined in its domain's package (one Django app, one set of
tables and migrations): Django loads them from here."""

from conversations.accounts.models import (
    GroupManager,
    GroupRetention,
    Invitation,
    PendingAccount,
    SingleSignOnIdentity,
    SiteSettings,
    invitation_code,
)
from conversations.api.models import ApiKey
from conversations.billing.models import (
    BudgetPeriod,
    GroupBudget,
    GroupBudgetPeriod,
    ModelPrice,
    UsageDay,
    UserBudget,
)
from conversations.chat.models import Completion, Conversation, Message
from conversations.providers.models import ModelAccess, Provider, ProviderModel
from conversations.review.models import AuditEvent, AuditSubject
from conversations.sharing.models import ShareLink

__all__ = [
    "ApiKey",
    "AuditEvent",
    "AuditSubject",
    "BudgetPeriod",
    "Completion",
    "Conversation",
    "GroupBudget",
    "GroupBudgetPeriod",
    "GroupManager",
    "GroupRetention",
    "Invitation",
    "Message",
    "ModelAccess",
    "ModelPrice",
    "PendingAccount",
    "Provider",
    "ProviderModel",
    "ShareLink",
    "SingleSignOnIdentity",
    "SiteSettings",
    "UsageDay",
    "UserBudget",
    "invitation_code",
]
