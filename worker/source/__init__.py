"""Where a job's data comes from: the HTTP session a job gets, and what it reads with it.

- `http.py`        Session (`ctx.http`): timeouts, retries, a deadline and a size limit on every
                   response, one-line errors; get_json and the streaming readers
- `body.py`        a response's bytes as they arrive, within its deadline and size, gzip undone
- `readers.py`     JSON array items (ijson), NDJSON lines, CSV rows, item by item
- `retry.py`       waits between retries: Retry-After honoured, bounded, ended by a shutdown
- `paginators.py`  where the next page is: a Link header, a URL or a cursor in the body, an
                   offset, a page number
- `pages.py`       walking the pages: each page's items and the position of the next one
- `auth.py`        credentials named by environment variables, masked everywhere

This layer knows nothing of runs, state or the database (tests/unit/test_layout.py).
"""
