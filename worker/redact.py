"""Keep secrets out of every line we print.

Two layers: known secret values (the database password, the API token, the webhook URL)
registered when they are read, and patterns for anything that looks like credentials in a URL
or a libpq message: URL userinfo, the value of a credential-carrying query parameter (see
`SENSITIVE_PARAM_WORDS`), libpq's `password=` and the role it names. `redact` runs on every log
event (ours, urllib3's and requests' alike, at every level), every exception message and every
CLI line; `safe_url` applies the same query rule.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

_secrets: set[str] = set()
_lock = threading.Lock()

# scheme://user:password@host  and  scheme://user@host
# A scheme starts where no scheme character stands before it: without that look-behind, each
# position inside a long run of letters starts a scan to its end (a megabyte error: minutes).
_URL_USERINFO = re.compile(
    r"(?<![a-zA-Z0-9+.-])(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s]+)@"
)
# libpq keyword form: password=... (quoted or not), unless the query rule masked it already.
_KEYWORD_PASSWORD = re.compile(
    r"(password\s*=\s*)(?!\*\*\*(?:[&#\s'\"\\]|$))('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE
)
# libpq names the role in auth failures: for user "u5abc..."
_LIBPQ_USER = re.compile(r'(\buser\s+)"[^"]*"')

# A query parameter carries a credential when the last word of its name is one of these
# (words split at "_", "-", "." and camelCase): api_key, x-api-key, apiKey, access_token,
# refresh_token, client-secret, X-Amz-Signature... but not keyword, monkey, tokens_count, authority.
SENSITIVE_PARAM_WORDS = (
    "key", "apikey", "token", "secret", "password", "passwd", "pwd",
    "signature", "sig", "auth", "authorization", "credential", "credentials",
)  # fmt: skip
_WORDS = "|".join(sorted(SENSITIVE_PARAM_WORDS, key=len, reverse=True))
_PARAM_NAME = rf"(?:[\w.-]*?(?:[_.-]|(?-i:(?<=[a-z0-9])(?=[A-Z]))))?(?:{_WORDS})"
_SENSITIVE_PARAM = re.compile(rf"{_PARAM_NAME}\Z", re.IGNORECASE)
# name=value after "?", "&", ";" or "#" (or %-encoded "?" and "&", in a URL inside a URL); the
# value runs to "&", "#", whitespace, a quote, a backslash (JSON's \" in a CLI line) or the end.
_QUERY_PARAM = re.compile(
    rf"(?P<name>(?:[?&;#]|%3F|%26){_PARAM_NAME}(?:=|%3D))(?P<value>[^&#\s'\"\\]+)",
    re.IGNORECASE,
)
_MIN_SECRET_LENGTH = 4


def register_secret(value: str | None) -> None:
    """Remember a secret value so that it is masked wherever it appears."""
    if value and len(value) >= _MIN_SECRET_LENGTH:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Mask registered secrets, URL credentials, credential query values and libpq user names."""
    if not text:
        return text
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _QUERY_PARAM.sub(lambda m: f"{m['name']}{MASK}", text)
    text = _KEYWORD_PASSWORD.sub(lambda m: f"{m[1]}{MASK}", text)
    return _LIBPQ_USER.sub(lambda m: f'{m[1]}"{MASK}"', text)


def is_sensitive_param(name: str) -> bool:
    """Does a query parameter of this name carry a credential? (The rule `redact` applies.)"""
    return _SENSITIVE_PARAM.match(name) is not None


def safe_url(url: str) -> str:
    """A URL fit for a log line: no credentials or fragment, sensitive query values masked."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    query = _QUERY_PARAM.sub(lambda m: f"{m['name']}{MASK}", f"?{parts.query}")[1:]
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
