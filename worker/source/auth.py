"""Credentials for a source, named by environment variables: a bearer token, an API key (in a
header or the query), HTTP basic auth.

Each reads its variables when it is made — a missing or empty one is one line naming it — and
registers the values with `worker.redact`, so they are masked in every log line, error, alert
and CLI output from then on. Pass one as `auth=` to any request or reader of `ctx.http`, or to
`ctx.paginate`:

    token = Bearer("SHOP_TOKEN")
    for order in ctx.paginate(url, LinkHeader(), auth=token): ...

requests drops the Authorization header on a redirect to another host; the session drops an
API-key header too (`Session.rebuild_auth`), and a query key is added to the request made, never
to the URL a job or a next link holds.
"""

from __future__ import annotations

import base64
import os
from urllib.parse import quote, unquote_plus, urlsplit, urlunsplit

from requests import PreparedRequest
from requests.auth import AuthBase

from worker.errors import MissingSecret
from worker.redact import register_secret


def from_env(name: str, what: str) -> str:
    """The environment variable `name`, registered as a secret; one line when it is missing."""
    value = os.environ.get(name, "")
    if not value:
        raise MissingSecret(f"the environment has no {name} ({what})")
    register_secret(value)
    return value


class Bearer(AuthBase):
    """`Authorization: Bearer <token>`, the token read from the environment variable `name`."""

    header = "Authorization"
    query = None

    def __init__(self, name: str) -> None:
        self._value = f"Bearer {from_env(name, 'Bearer')}"

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request.headers[self.header] = self._value
        return request

    def __repr__(self) -> str:
        return "Bearer(***)"


class ApiKey(AuthBase):
    """An API key from the environment variable `name`, sent in a header (default `X-API-Key`)
    or, with `query="api_key"`, as that query parameter."""

    def __init__(self, name: str, header: str = "X-API-Key", query: str | None = None) -> None:
        self._key = from_env(name, "ApiKey")
        self.header = None if query else header
        self.query = query

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        if self.query:
            request.url = with_param(request.url or "", self.query, self._key)
        else:
            request.headers[self.header] = self._key
        return request

    def __repr__(self) -> str:
        return f"ApiKey(***, {'query=' + repr(self.query) if self.query else repr(self.header)})"


class Basic(AuthBase):
    """HTTP basic auth, the user and password from the environment variables named (no
    `password`: an empty one, as APIs that take a key as the user name want)."""

    header = "Authorization"
    query = None

    def __init__(self, user: str, password: str | None = None) -> None:
        secret = from_env(password, "Basic") if password else ""
        pair = f"{from_env(user, 'Basic')}:{secret}"
        token = base64.b64encode(pair.encode()).decode()
        register_secret(token)  # a job that logs its request headers shows this form
        self._value = f"Basic {token}"

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request.headers[self.header] = self._value
        return request

    def __repr__(self) -> str:
        return "Basic(***)"


def with_param(url: str, name: str, value: str) -> str:
    """`url` with the query parameter `name` set to `value` (the rest of the query untouched)."""
    parts = urlsplit(url)
    pair = f"{quote(name, safe='')}={quote(value, safe='')}"
    return urlunsplit(parts._replace(query="&".join([*_others(parts.query, name), pair])))


def without_param(url: str, name: str) -> str:
    """`url` without the query parameter `name` (a key a server echoed into a next link)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query="&".join(_others(parts.query, name))))


def _others(query: str, name: str) -> list[str]:
    return [p for p in query.split("&") if p and unquote_plus(p.split("=", 1)[0]) != name]
