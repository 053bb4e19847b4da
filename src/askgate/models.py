"""Every ORM model, imported in one place for Alembic and the app."""

from askgate.api_keys.models import ApiKey
from askgate.auth.models import AuthEpoch, AuthSession, RefreshToken
from askgate.questions.models import Question, QuestionStatus
from askgate.quota.models import QuotaReservation, TokenUsage
from askgate.usage.models import UsageDaily, UserUsageDaily
from askgate.users.models import Role, User

__all__ = [
    "ApiKey",
    "AuthEpoch",
    "AuthSession",
    "Question",
    "QuestionStatus",
    "QuotaReservation",
    "RefreshToken",
    "Role",
    "TokenUsage",
    "UsageDaily",
    "User",
    "UserUsageDaily",
]
