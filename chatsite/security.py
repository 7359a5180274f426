"""Browser-facing protections Django 5.2 has no setting for, and static files by WhiteNoise.

Both middlewares work for sync and async requests alike, so the async reply streams never
pay a thread hop for them.
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.utils.cache import patch_cache_control
from whitenoise.middleware import WhiteNoiseMiddleware

from chatsite.middleware import Middleware


class ContentSecurityPolicyMiddleware(Middleware):
    """Adds Content-Security-Policy and Permissions-Policy to every response."""

    def __init__(self, get_response) -> None:
        super().__init__(get_response)
        self.headers = {
            "Content-Security-Policy": settings.CONTENT_SECURITY_POLICY,
            "Permissions-Policy": settings.PERMISSIONS_POLICY,
        }

    def _add_headers(self, response: HttpResponseBase) -> HttpResponseBase:
        for name, value in self.headers.items():
            if value and name not in response:
                response[name] = value
        return response

    def call(self, request: HttpRequest) -> HttpResponseBase:
        return self._add_headers(self.get_response(request))

    async def acall(self, request: HttpRequest) -> HttpResponseBase:
        return self._add_headers(await self.get_response(request))


class PrivatePagesMiddleware(Middleware):
    """Pages for a signed-in person are theirs alone: no shared cache or browser history
    keeps them (`Cache-Control: private, no-store`)."""

    @staticmethod
    def _private(response: HttpResponseBase) -> HttpResponseBase:
        patch_cache_control(response, private=True, no_store=True)
        return response

    @staticmethod
    def _signed_in(request: HttpRequest) -> bool:
        # Only a user the request has loaded already: asking here would load the session
        # (a query) for pages that never needed it.
        user = getattr(request, "_cached_user", None) or getattr(request, "_acached_user", None)
        return user is not None and user.is_authenticated

    def call(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        return self._private(response) if self._signed_in(request) else response

    async def acall(self, request: HttpRequest) -> HttpResponseBase:
        response = await self.get_response(request)
        return self._private(response) if self._signed_in(request) else response


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise, async-capable: static files are looked up in memory (no thread), and
    every other request goes on without the sync hop WhiteNoise's own middleware costs."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None, settings=settings) -> None:
        super().__init__(get_response, settings=settings)
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if iscoroutinefunction(self):
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        if self.autorefresh:
            static_file = await sync_to_async(self.find_file)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            return self.serve(static_file, request)
        return await self.get_response(request)
