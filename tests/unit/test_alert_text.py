"""A webhook message's `text` (Slack markup) holds nothing from data that Slack would obey:
whatever the job's name, the dyno or the error hold, `<` and `>` arrive as `&lt;` and `&gt;`
and every `&` as `&amp;`; the JSON fields beside it stay plain data."""

from __future__ import annotations

import re
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.alerts import failure_message, recovered_message
from worker.redact import redact

ANY_CHAR = st.characters(codec=None, categories=None, exclude_categories=())
MARKUP = st.sampled_from(["<!channel>", "<https://evil.example|your dashboard>", "&", "&amp;", ">"])
TEXTS = st.lists(st.one_of(st.text(ANY_CHAR, max_size=20), MARKUP), max_size=6).map("".join)
BARE_AMPERSAND = re.compile(r"&(?!amp;|lt;|gt;)")


def obeyed(text: str) -> list[str]:
    """What Slack would read as markup in `text`: a `<`, a `>`, or an `&` not one of its escapes."""
    return re.findall(r"[<>]", text) + BARE_AMPERSAND.findall(text)


def unescaped(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def test_the_markup_of_the_issue_is_escaped():
    result = SimpleNamespace(
        job="orders", status="failed", run_id=7, rows=0, rejected=0,
        error="source: <!channel> see <https://evil.example|your dashboard> & act",
    )  # fmt: skip

    sent = failure_message(result, "worker.1")

    assert sent["text"] == (
        ":rotating_light: Nightshift job orders failed (run 7 on worker.1): source:"
        " &lt;!channel&gt; see &lt;https://evil.example|your dashboard&gt; &amp; act"
    )
    assert sent["error"] == result.error


@settings(max_examples=300)
@given(job=TEXTS, dyno=TEXTS, error=TEXTS, status=st.sampled_from(["failed", "succeeded"]))
def test_every_message_text_is_slack_escaped_and_its_fields_plain(job, dyno, error, status):
    result = SimpleNamespace(
        job=job, status=status, run_id=3, rows=5, rejected=2, error=error or None
    )

    failure = failure_message(result, dyno)
    recovered = recovered_message(result, dyno, failed_runs=4)

    for sent in (failure, recovered):
        assert obeyed(sent["text"]) == []
        assert (sent["job"], sent["dyno"]) == (job, dyno)
        assert unescaped(sent["text"]) == redact(unescaped(sent["text"]))  # nothing left to mask
    if status == "failed":
        assert failure["error"] == redact(error or "unknown error")
        assert unescaped(failure["text"]).endswith(f"): {redact(failure['error'])}")
