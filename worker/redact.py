"""Keep secrets out of every line we print.

Two layers: known secret values (the database password, the API token) registered when they
are read, and patterns for anything that looks like credentials in a URL or a libpq message.
`redact` runs on every log event, every exception message and every CLI line.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"

_secrets: set[str] = set()
_lock = threading.Lock()

# scheme://user:password@host  and  scheme://user@host
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s]+)@")
# libpq keyword form: password=... (quoted or not)
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
# libpq names the role in auth failures: for user "u5abc..."
_LIBPQ_USER = re.compile(r'(\buser\s+)"[^"]*"')
_SENSITIVE_PARAM = re.compile(
    r"(?:^|[_-])(?:api[_-]?key|key|token|secret|password|passwd|pwd|sig|signature|auth"
    r"|authorization|credentials?)$",
    re.IGNORECASE,
)
_MIN_SECRET_LENGTH = 4


def register_secret(value: str | None) -> None:
    """Remember a secret value so that it is masked wherever it appears."""
    if value and len(value) >= _MIN_SECRET_LENGTH:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Mask registered secrets, URL credentials and libpq user names in `text`."""
    if not text:
        return text
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _KEYWORD_PASSWORD.sub(lambda m: f"{m[1]}{MASK}", text)
    return _LIBPQ_USER.sub(lambda m: f'{m[1]}"{MASK}"', text)


def safe_url(url: str) -> str:
    """A URL fit for a log line: no credentials, sensitive query values masked."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    query = urlencode(
        [(k, MASK if _SENSITIVE_PARAM.search(k) else v) for k, v in parse_qsl(parts.query)],
        safe="*",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
