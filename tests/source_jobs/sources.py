"""Jobs that read a local API the way a job author would: a paginated list (with the paginator
named by PAGED_PAGINATOR), and a source behind credentials named by AUTH_KIND.

`paged`: every item of every page at PAGED_URL (`{"data": [...], ...}`), resuming mid-way.
`authed`: one request it logs whole (URL, headers, status), as a job author debugging a source
would, then the pages of the same URL, both with the credentials AUTH_KIND names.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from worker import (
    ApiKey,
    Basic,
    Bearer,
    Context,
    Cursor,
    LinkHeader,
    NextUrl,
    Offset,
    PageNumber,
    Paginator,
    job,
)

PAGINATORS: dict[str, Paginator] = {
    "page": PageNumber(),
    "link": LinkHeader(),
    "next": NextUrl("links.next"),
    "cursor": Cursor("next_cursor", param="after"),
    "offset": Offset(limit=10),
}


@job(table="paged", columns={"id": "integer", "page": "integer"}, key="id")
def paged(ctx: Context) -> Iterator[dict[str, Any]]:
    paginator = PAGINATORS[os.environ["PAGED_PAGINATOR"]]
    for item in ctx.paginate(os.environ["PAGED_URL"], paginator, items="data"):
        yield {"id": item["id"], "page": item["page"]}


def credentials() -> Any:
    kind = os.environ["AUTH_KIND"]
    if kind == "bearer":
        return Bearer("SHOP_TOKEN")
    if kind == "header":
        return ApiKey("SHOP_TOKEN", header="X-Api-Key")
    if kind == "query":
        return ApiKey("SHOP_TOKEN", query="api_key")
    return Basic("SHOP_USER", "SHOP_TOKEN")


@job(table="authed", columns={"id": "integer"}, key="id")
def authed(ctx: Context) -> Iterator[dict[str, Any]]:
    url, auth = os.environ["AUTH_URL"], credentials()
    response = ctx.http.get(url, auth=auth)
    request = response.request
    ctx.log.info(
        "source_request",
        url=request.url,
        headers=dict(request.headers),
        status=response.status_code,
        auth=repr(auth),
    )
    for item in ctx.paginate(url, LinkHeader(), items="data", auth=auth):
        yield {"id": item["id"]}
