"""Sessions read from the shared cache (Redis) and kept in the database: no query per
request, and no failed page while the cache is away (a Redis restart): every cache error
falls back to the database, which holds every session anyway.

Django's own `cached_db` store guards only part of this (a failed read after a miss, or a
failed `exists`, raise). A session's cache entry lives at most CACHE_SECONDS: a log-out
that could not remove it from an unreachable cache leaves it usable no longer than that.
"""

from __future__ import annotations

import logging

from asgiref.sync import sync_to_async
from django.contrib.sessions.backends import cached_db
from django.contrib.sessions.backends.db import SessionStore as DatabaseStore

logger = logging.getLogger(__name__)

CACHE_SECONDS = 600


class SessionStore(cached_db.SessionStore):
    def load(self) -> dict:
        try:
            data = self._cache.get(self.cache_key)
        except Exception:
            data = None
        if data is not None:
            return data
        row = self._get_session_from_db()
        if row is None:
            return {}
        data = self.decode(row.session_data)
        self._cache_set(data, self.get_expiry_age(expiry=row.expire_date))
        return data

    def exists(self, session_key: str | None) -> bool:
        if session_key:
            try:
                if self.cache_key_prefix + session_key in self._cache:
                    return True
            except Exception:
                logger.warning("Session cache unavailable; asking the database")
        return DatabaseStore.exists(self, session_key)

    def save(self, must_create: bool = False) -> None:
        DatabaseStore.save(self, must_create)
        self._cache_set(self._session, self.get_expiry_age())

    def delete(self, session_key: str | None = None) -> None:
        DatabaseStore.delete(self, session_key)
        session_key = session_key or self.session_key
        if session_key is None:
            return
        try:
            self._cache.delete(self.cache_key_prefix + session_key)
        except Exception:
            logger.error(
                "Session cache unavailable: a deleted session stays cached up to %s s",
                CACHE_SECONDS,
            )

    def _cache_set(self, data: dict, age: int) -> None:
        try:
            self._cache.set(self.cache_key, data, min(age, CACHE_SECONDS))
        except Exception:
            logger.warning("Session cache unavailable; the database has the session")

    # The async versions (request.auser()) run the same code in a thread.
    async def aload(self) -> dict:
        return await sync_to_async(self.load)()

    async def aexists(self, session_key: str | None) -> bool:
        return await sync_to_async(self.exists)(session_key)

    async def asave(self, must_create: bool = False) -> None:
        await sync_to_async(self.save)(must_create)

    async def adelete(self, session_key: str | None = None) -> None:
        await sync_to_async(self.delete)(session_key)
