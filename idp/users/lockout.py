"""Bad-password lockout: counters change in one UPDATE so concurrent failures are all counted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import case, update

from idp.models import User, db
from idp.settings import Settings

# A bad-password lock with IDP_LOCKOUT_DURATION=0 lasts until an unlock.
UNTIL_UNLOCKED = datetime(9999, 1, 1, tzinfo=UTC)


def is_locked(user: User, now: datetime) -> bool:
    """Locked either way: by an operator (API or CLI), or by bad password attempts."""
    return user.locked or (user.locked_until is not None and user.locked_until > now)


def is_locked_by_operator(user: User) -> bool:
    """Only this lock ends live sessions; a bad-password lock guards the password alone."""
    return user.locked


def record_failure(user_id: str, settings: Settings, now: datetime) -> int:
    """Count one bad password; lock at the threshold. Returns the new consecutive count."""
    lapsed = User.locked_until.is_not(None) & (User.locked_until <= now)
    count = case((lapsed, 1), else_=User.bad_attempts + 1)
    reached = count >= settings.lockout_threshold
    values: dict = {"bad_attempts": count, "last_failure_at": now}
    until = UNTIL_UNLOCKED
    if settings.lockout_duration:
        until = now + timedelta(seconds=settings.lockout_duration)
    values["locked_until"] = case((reached, until), (lapsed, None), else_=User.locked_until)
    statement = update(User).where(User.id == user_id).values(values).returning(User.bad_attempts)
    return db.session.execute(statement).scalar_one()


def record_success(user_id: str, now: datetime) -> None:
    db.session.execute(
        update(User)
        .where(User.id == user_id)
        .values(bad_attempts=0, locked_until=None, last_accessed=now)
    )


def unlock(user: User) -> None:
    user.locked = False
    user.locked_until = None
    user.bad_attempts = 0
