"""Where the next page is. One class per way an API says it (after dlt's REST client, whose
paginators these follow in spirit, not in code):

| the API says                          | paginator                            | position saved    |
|---------------------------------------|--------------------------------------|-------------------|
| `Link: <…?page=2>; rel="next"`        | `LinkHeader()`                       | `{"url": …}`      |
| `{"next": "https://…?page=2"}`        | `NextUrl("next")`                    | `{"url": …}`      |
| `{"next_cursor": "abc"}`, `?cursor=`  | `Cursor("next_cursor", "cursor")`    | `{"cursor": …}`   |
| `?offset=200&limit=100`               | `Offset(limit=100)`                  | `{"offset": 200}` |
| `?page=3`                             | `PageNumber()`                       | `{"page": 3}`     |

A paginator is stateless: `request(start, position)` says what to ask for a position (None: the
first page), `next(page)` reads the position of the page after `page` from its answer, or None
when there is none. Positions are small JSON objects, so a run can save one and the next run
start from it. The walk (`worker.source.pages`) stops on an empty page whatever the paginator
says, and refuses a request it already made.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import requests

from worker.errors import SourceError

Position = dict[str, Any]


@dataclass(frozen=True)
class PageRequest:
    """What to ask for one page: a URL and the query parameters requests adds to it."""

    url: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def with_params(self, **params: Any) -> PageRequest:
        return PageRequest(self.url, {**self.params, **params})


@dataclass
class Page:
    """One page: what was asked, what came back, its items, and where the next one is."""

    number: int  # 1 for the first page this walk asked for
    request: PageRequest
    position: Position | None  # this page's position (None: the first page)
    response: requests.Response
    body: Any  # the page's JSON document
    items: list[Any]
    next: Position | None = None  # the next page's position; None: this is the last page


class Paginator:
    """Base class: override `next` (and `request` when a position is not a URL)."""

    def request(self, start: PageRequest, position: Position | None) -> PageRequest:
        """The request for `position`; the first page (None) is `start` as the job gave it."""
        if position is None:
            return start
        return PageRequest(str(position["url"]))  # a next URL carries its own query

    def next(self, page: Page) -> Position | None:
        raise NotImplementedError


class LinkHeader(Paginator):
    """The next page's URL in the `Link` header (RFC 8288), e.g. GitHub's or Shopify's."""

    def __init__(self, rel: str = "next") -> None:
        self.rel = rel.lower()

    def next(self, page: Page) -> Position | None:
        target = link_target(page.response.headers.get("Link", ""), self.rel)
        return None if not target else {"url": urljoin(page.response.url, target)}


class NextUrl(Paginator):
    """The next page's URL in the JSON body, at `path` (keys joined by dots: "links.next")."""

    def __init__(self, path: str = "next") -> None:
        self.path = path

    def next(self, page: Page) -> Position | None:
        target = dig(page.body, self.path)
        if target in (None, ""):
            return None
        if not isinstance(target, str):
            raise SourceError(f"the page's '{self.path}' is not a URL: {str(target)[:80]!r}")
        return {"url": urljoin(page.response.url, target)}


class Cursor(Paginator):
    """A token in the JSON body at `path`, sent back as the query parameter `param`; none (or
    a false `has_more`, when its path is given) ends the walk."""

    def __init__(
        self, path: str = "next_cursor", param: str = "cursor", has_more: str | None = None
    ) -> None:
        self.path, self.param, self.has_more = path, param, has_more

    def request(self, start: PageRequest, position: Position | None) -> PageRequest:
        return start if position is None else start.with_params(**{self.param: position["cursor"]})

    def next(self, page: Page) -> Position | None:
        if self.has_more is not None and not dig(page.body, self.has_more):
            return None
        token = dig(page.body, self.path)
        return None if token in (None, "") else {"cursor": token}


class Offset(Paginator):
    """`?offset=N&limit=L`. The next offset counts the items received (an API that caps the
    limit loses nothing); `total`: the path of the item count, when the API gives one."""

    def __init__(
        self,
        limit: int,
        offset_param: str = "offset",
        limit_param: str = "limit",
        start: int = 0,
        total: str | None = None,
    ) -> None:
        self.limit, self.start, self.total = limit, start, total
        self.offset_param, self.limit_param = offset_param, limit_param

    def request(self, start: PageRequest, position: Position | None) -> PageRequest:
        offset = self.start if position is None else int(position["offset"])
        return start.with_params(**{self.offset_param: offset, self.limit_param: self.limit})

    def next(self, page: Page) -> Position | None:
        offset = self.start if page.position is None else int(page.position["offset"])
        offset += len(page.items)
        total = _number(page, self.total)
        return None if total is not None and offset >= total else {"offset": offset}


class PageNumber(Paginator):
    """`?page=N` from `start`; `total`: the path of the number of pages, when the API gives one."""

    def __init__(self, param: str = "page", start: int = 1, total: str | None = None) -> None:
        self.param, self.start, self.total = param, start, total

    def request(self, start: PageRequest, position: Position | None) -> PageRequest:
        number = self.start if position is None else int(position["page"])
        return start.with_params(**{self.param: number})

    def next(self, page: Page) -> Position | None:
        number = self.start if page.position is None else int(page.position["page"])
        total = _number(page, self.total)
        last = None if total is None else self.start + total - 1
        return None if last is not None and number >= last else {"page": number + 1}


# -- reading answers -----------------------------------------------------------------------------
def dig(document: Any, path: str) -> Any:
    """The value at `path` (keys joined by dots; a number indexes a list), or None."""
    node = document
    for part in path.split("."):
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _number(page: Page, path: str | None) -> int | None:
    if path is None:
        return None
    value = dig(page.body, path)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return int(value)
    except ValueError:
        return None


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_PARAM = re.compile(rf"\s*;\s*({_TOKEN})\s*(?:=\s*({_QUOTED}|[^\";,\s]*))?")
_LINK = re.compile(rf"<([^>]*)>((?:\s*;\s*{_TOKEN}\s*(?:=\s*(?:{_QUOTED}|[^\";,\s]*))?)*)")


def link_target(header: str, rel: str) -> str | None:
    """The target of the first link in a Link header whose relation types include `rel`
    (RFC 8288 §3: several links, several space-separated types, quoted or not, any case)."""
    for link in _LINK.finditer(header):
        for name, value in _PARAM.findall(link[2]):
            if name.lower() != "rel":
                continue
            types = value[1:-1] if value.startswith('"') else value
            if rel in types.lower().split():
                return link[1].strip()
    return None
