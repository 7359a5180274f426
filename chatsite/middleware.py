"""A base for our middleware: it runs in sync and async stacks alike, with no thread hop.

(Django's MiddlewareMixin serves async requests by running its hooks in a thread.)
A subclass writes `call` for a sync stack and `acall` for an async one.
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase


class Middleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        return self.acall(request) if self.is_async else self.call(request)

    def call(self, request: HttpRequest) -> HttpResponseBase:
        raise NotImplementedError

    async def acall(self, request: HttpRequest) -> HttpResponseBase:
        raise NotImplementedError
