"""Jobs whose error texts, refused rows and parameters are what a test chooses.

`says`: logs the note, yields the rows, then raises the error, of the JSON document in the file
PEOPLE_DOC: {"note": "...", "rows": [...], "raise": "..."} (a file: an environment variable
cannot hold NUL).
`keeps_params`: writes each parameter it received (ctx.params) as a row, its name and value, so
a test sees the job got the real value; given the parameter `fail`, it raises an error that
names `api_key`'s value, as an upstream answer quoting a credential would.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from worker import Context, job


@job(table="said", columns={"id": "text", "n": "integer", "label": "text"}, key="id")
def says(ctx: Context) -> Iterator[Any]:
    document = json.loads(Path(os.environ["PEOPLE_DOC"]).read_text())
    if document.get("note") is not None:  # a value from the source, in the job's own log line
        ctx.log.info("noted", note=document["note"])
    yield from document.get("rows", [])
    if document.get("raise") is not None:
        raise RuntimeError(document["raise"])


@job(table="kept_params", columns={"name": "text", "value": "text"}, key="name")
def keeps_params(ctx: Context) -> Iterator[Any]:
    if "fail" in ctx.params:
        raise RuntimeError(f"the source refused the key {ctx.params.get('api_key')}")
    yield [{"name": name, "value": value} for name, value in ctx.params.items()]
