"""ASGI entry point (uvicorn chatsite.asgi:application).

Django's ASGI handler runs every middleware in async mode, and each of Django's own
middleware then hops to a thread for each of its hooks: a dozen hops per page. Here a
request for a sync view (every page and form) runs the whole sync middleware chain and the
view in one hop instead; async views (the reply's event stream) keep the async chain. A
reply's event stream with its signed token (`LIVE_EVENTS_APP`) is served ahead of Django
altogether: no middleware, no session, no thread per event; and so is the OpenAI-compatible
API (conversations/api/serving.py), whose calls carry their own key.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import iscoroutinefunction, sync_to_async

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

import django
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.db import close_old_connections
from django.urls import Resolver404, get_resolver, resolve
from django.utils.module_loading import import_string

# Answered by the first middleware before any URL is looked up (chatsite.health).
PROBES = ("/healthz", "/readyz")


class Handler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=True)
        self.sync = BaseHandler()
        self.sync.load_middleware(is_async=False)
        # Long-lived threads: what a thread keeps (its database connection between a
        # request's statements, Celery's result backend) is made once, not per request.
        pool = ThreadPoolExecutor(max_workers=settings.WEB_THREADS, thread_name_prefix="web")
        self._sync_response = sync_to_async(self._serve, thread_sensitive=False, executor=pool)

    def _serve(self, request):
        # The whole request runs in this one thread, so its connection is given back here
        # (Django's own close at the end of a request runs in another thread).
        close_old_connections()
        try:
            return self.sync.get_response(request)
        finally:
            close_old_connections()

    async def get_response_async(self, request):
        if request.path_info in PROBES or _async_view(request.path_info):
            return await super().get_response_async(request)
        return await self._sync_response(request)


def _async_view(path: str) -> bool:
    try:
        return iscoroutinefunction(resolve(path).func)
    except Resolver404:
        return False  # the sync chain answers it (404)


def _application():
    django.setup(set_prefix=False)
    # Every view module, loaded now rather than on the event loop by the first request.
    get_resolver().url_patterns  # noqa: B018
    app = Handler()
    if settings.LIVE_EVENTS_APP:
        app = import_string(settings.LIVE_EVENTS_APP)(fallback=app)
    # The API's URLs (/v1/, /api/v1/) carry their own key: served ahead of Django too.
    return import_string(settings.API_APP)(fallback=app)


application = _application()
