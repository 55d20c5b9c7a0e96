"""Text that came from outside (a row, a source's answer, an exception message) on its way to a
place it must not break, or to a person who must not be fooled by it.

- `stored`: fit for a text column: PostgreSQL refuses NUL, UTF-8 cannot hold a lone surrogate,
  and an error's text has no business being megabytes long.
- `printable`: fit for a terminal: control characters (an escape sequence retitles the
  operator's terminal, a carriage return hides what came before it) and the invisible marks that
  reorder text (bidi overrides) are shown escaped, `\\x1b`, never sent raw.
- `slack`: fit for a Slack-style webhook's `text`: `&`, `<` and `>` escaped as Slack documents,
  so data cannot ping `<!channel>` or disguise a link.
"""

from __future__ import annotations

import re

# A stored error's length at most: a line for people, not a dump of the source's answer.
STORED_LIMIT = 2000
ELLIPSIS = "…"

_SURROGATE = re.compile("[\ud800-\udfff]")
# C0 and C1 controls, DEL, lone surrogates, and the format marks that reorder or hide text.
_UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]"
)
_SLACK = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def stored(text: str, limit: int = STORED_LIMIT) -> str:
    """`text` as a text column can hold it: NUL removed, lone surrogates replaced (U+FFFD),
    at most `limit` characters (cut with an ellipsis)."""
    text = _SURROGATE.sub("\ufffd", text.replace("\x00", ""))
    if len(text) > limit:
        text = text[: limit - len(ELLIPSIS)] + ELLIPSIS
    return text


def printable(text: str) -> str:
    """`text` as a terminal can show it without obeying it: every control character, lone
    surrogate and bidi mark escaped (`\\x1b`, `\\n`, `\\u202e`)."""
    return _UNPRINTABLE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if char in "\n\r\t":
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[char]
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def slack(text: str) -> str:
    """`text` for a Slack message: `&`, `<`, `>` as `&amp;`, `&lt;`, `&gt;` (Slack's own rule:
    nothing from data can become a mention, a channel ping or a link)."""
    return text.translate(_SLACK)
