"""What the ASGI apps served ahead of Django (a reply's event stream, the API) share."""

from __future__ import annotations


def header(scope: dict, name: bytes) -> str:
    """A request header's value ("" when absent); `name` in lower case."""
    return next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == name), "")


async def disconnected(receive) -> None:
    """Returns once the client has gone."""
    while (await receive())["type"] != "http.disconnect":
        pass
