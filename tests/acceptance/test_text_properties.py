"""Generated texts (any unicode, C0 and C1 controls, NUL, lone surrogates, bidi marks, Slack
markup, very long) where runs, refused rows and alerts carry them: what the CLI prints holds no
raw control character and one row is one line, its --json is valid JSON whose strings hold
none either, and a webhook's `text` holds no `<`, `>` or bare `&` from data.

The history is written directly (as the engine stores it: `text.stored`), then read through the
real CLI a bounded number of times: subprocesses are slow, so each example holds several texts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from worker.text import printable, stored

JOBS = {"JOBS_PACKAGE": "tests.people_jobs"}
FRAGMENTS = [
    "\x1b]0;pwned\x07", "\x1b[2J", "\x9b31m", "\x00", "\ud800", "\udfff", "\r", "\n", "\t",
    "\x7f", "\x85", "\u202e", "\u2066", "\u200f", "\ufeff", "<!channel>", "<!here|here>",
    "<https://evil.example|your dashboard>", "<@U024BE7LH>", "&", "&amp;", "&lt;", ">",
]  # fmt: skip
ANY_CHAR = st.characters(codec=None, categories=None, exclude_categories=())
PIECES = st.one_of(
    st.text(ANY_CHAR, max_size=30),
    st.sampled_from(FRAGMENTS),
    st.builds(lambda s, n: s * n, st.sampled_from([*FRAGMENTS, "a", "é"]), st.integers(50, 3000)),
)
TEXTS = st.lists(PIECES, min_size=1, max_size=6).map("".join)
# No shrinking: each step would run the CLI again (minutes for long texts, past the test's
# timeout); a failure is reported with the example as generated.
UNSHRUNK = (Phase.explicit, Phase.reuse, Phase.generate)
# What Slack's text may hold of `&`: only its three escapes.
BARE_AMPERSAND = re.compile(r"&(?!amp;|lt;|gt;)")


def raw_controls(output: str) -> set[str]:
    """The characters a terminal would obey, other than the output's own line breaks."""
    return {c for c in output if c != "\n" and printable(c) != c}


def json_safe(text: str) -> str:
    """`text` as a json column takes it: NUL is fine there, a lone surrogate is not."""
    return re.sub("[\ud800-\udfff]", "\ufffd", text)


def shown(stored_text: str, printed: str) -> bool:
    """Is `printed` the stored text escaped (or masked, where it looked like a secret)?"""
    return printed == printable(stored_text) or "***" in printed


@settings(max_examples=8, phases=UNSHRUNK)
@given(history=st.lists(st.tuples(TEXTS, TEXTS), min_size=1, max_size=5))
def test_generated_texts_in_runs_and_rejects_are_printed_escaped_one_row_per_line(cli, db, history):
    if not db.scalar("SELECT to_regclass('nightshift.runs') IS NOT NULL"):
        assert cli("migrate", **JOBS).returncode == 0
    db.query("TRUNCATE nightshift.rejects, nightshift.runs CASCADE")
    for error, other in history:
        [(run_id,)] = db.query(
            "INSERT INTO nightshift.runs (job, trigger, status, error, dyno, params)"
            " VALUES ('says', 'manual', 'failed', %s, %s, %s) RETURNING id",
            (stored(error), stored(other), json.dumps({"note": stored(other)})),
        )
        db.query(
            "INSERT INTO nightshift.rejects (job, run_id, key, row, error)"
            " VALUES ('says', %s, %s, %s, %s)",
            (
                run_id,
                json.dumps({"id": json_safe(other)}),
                json.dumps({"id": json_safe(other), "label": json_safe(error)}),
                stored(error),
            ),
        )

    runs, runs_json = cli("runs", **JOBS), cli("runs", "--json", **JOBS)
    rejects, rejects_json = cli("rejects", **JOBS), cli("rejects", "--json", **JOBS)

    for result in (runs, runs_json, rejects, rejects_json):
        assert result.returncode == 0, result.stderr
        assert raw_controls(result.stdout + result.stderr) == set()
    assert len(runs.stdout.splitlines()) == 1 + len(history)  # a header, then a line per row
    assert len(rejects.stdout.splitlines()) == 1 + len(history)
    listed = sorted(json.loads(runs_json.stdout), key=lambda run: run["id"])
    for run, (error, other) in zip(listed, history, strict=True):
        assert shown(stored(error), run["error"]) and shown(stored(other), run["dyno"])
        assert shown(stored(other), run["params"]["note"])
    for reject, (error, other) in zip(json.loads(rejects_json.stdout), history, strict=True):
        assert shown(stored(error), reject["error"])
        assert shown(json_safe(other), reject["key"]["id"])
        assert shown(json_safe(error), reject["row"]["label"])


@settings(max_examples=12, phases=UNSHRUNK)
@given(error=TEXTS)
def test_a_generated_error_reaches_the_webhook_text_slack_escaped_and_its_field_plain(
    cli, db, webhook, tmp_path: Path, error
):
    doc = tmp_path / "people.json"
    doc.write_text(json.dumps({"raise": error}))
    webhook.received.clear()
    if db.scalar("SELECT to_regclass('nightshift.runs') IS NOT NULL"):  # each its first failure
        db.query("TRUNCATE nightshift.rejects, nightshift.runs CASCADE")

    result = cli("run", "says", PEOPLE_DOC=str(doc), ALERT_WEBHOOK_URL=webhook.url, **JOBS)

    assert result.returncode == 1
    assert raw_controls(result.stderr) == set()
    [alert] = webhook.received
    text = alert["text"]
    assert "<" not in text and ">" not in text
    assert BARE_AMPERSAND.search(text) is None
    # The plain field is the error as recorded; the text says the same, once unescaped.
    recorded = db.scalar("SELECT error FROM nightshift.runs ORDER BY id DESC LIMIT 1")
    assert alert["error"] == recorded
    unescaped = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert unescaped.endswith(f"): {recorded}")
