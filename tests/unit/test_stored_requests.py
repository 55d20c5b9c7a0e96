"""A request as the queue stores it (read back as text) or as a run cut short recorded it,
checked before a run takes it: what a run can take is taken as it was asked; anything else is
refused with one line saying why, the value shown escaped and cut short."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from worker.run.errors import RequestRefused
from worker.run.request import RESUME, cleared, parse_stored, resume_request
from worker.store.records import CutShortRun, StoredRequest

RANGE = "(0001-01-01 to 9999-12-31)"


def stored(params: str = "{}", since: str | None = None, until: str | None = None):
    return StoredRequest(12, "plain", params, False, since, until)


def refusal(request: StoredRequest) -> str:
    with pytest.raises(RequestRefused) as refused:
        parse_stored(request)
    return str(refused.value)


def test_a_request_a_run_can_take_is_taken_as_it_was_asked() -> None:
    request = StoredRequest(7, "plain", '{"region": "ca"}', True, "0001-01-01", "9999-12-31")

    queued = parse_stored(request)

    assert (queued.id, queued.params, queued.full_refresh) == (7, {"region": "ca"}, True)
    assert (queued.since, queued.until) == (dt.date(1, 1, 1), dt.date(9999, 12, 31))


@pytest.mark.parametrize(
    ("since", "until", "reason"),
    [
        ("10000-01-01", None, f"since '10000-01-01' is not a date {RANGE}"),
        ("0044-03-15 BC", None, f"since '0044-03-15 BC' is not a date {RANGE}"),
        (None, "infinity", f"until 'infinity' is not a date {RANGE}"),
        ("-infinity", None, f"since '-infinity' is not a date {RANGE}"),
        ("0000-01-01", None, f"since '0000-01-01' is not a date {RANGE}"),
        ("2024-02-30", None, f"since '2024-02-30' is not a date {RANGE}"),
        ("20240101", None, f"since '20240101' is not a date {RANGE}"),  # fromisoformat takes it
        ("2024-02-01", "2024-01-31", "since '2024-02-01' is after until '2024-01-31'"),
    ],
)
def test_a_window_no_run_can_take_is_refused_naming_the_value_and_the_range(
    since, until, reason
) -> None:
    assert refusal(stored(since=since, until=until)) == reason


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ("[1]", "params must be a JSON object of strings, got a JSON array"),
        ("null", "params must be a JSON object of strings, got a JSON null"),
        ('"x"', "params must be a JSON object of strings, got a JSON string"),
        ('{"n": 1}', "params must be a JSON object of strings: 'n' is 1"),
        ('{"api_key": 1337}', "params must be a JSON object of strings: 'api_key' is ***"),
        ('{"n": {"m": "x"}}', "params must be a JSON object of strings: 'n' is a JSON object"),
        ('{"until": "x", "since": "y"}', "params may not be named since, until: use the columns"),
        ("[" * 5000 + "]" * 5000, "params are nested too deeply to read"),
    ],
)
def test_params_that_are_not_a_json_object_of_strings_are_refused_saying_how(
    params, reason
) -> None:
    assert refusal(stored(params)) == reason


def test_a_refused_value_is_shown_escaped_on_one_line_and_cut_short() -> None:
    reason = refusal(stored(since="\x1b]0;owned\x07" + "9" * 100))

    assert reason == f"since '\\x1b]0;owned\\x07{'9' * 29}…' is not a date {RANGE}"


def test_a_run_cut_short_is_resumed_with_what_it_recorded() -> None:
    recorded = {"region": "ca", "since": "2024-01-01", "full_refresh": True}

    request = resume_request(CutShortRun("plain", 41, json.dumps(recorded)))

    assert (request.kind, request.resumes, request.params) == (RESUME, 41, {"region": "ca"})
    assert (request.since, request.full_refresh) == (dt.date(2024, 1, 1), True)


@pytest.mark.parametrize(
    ("recorded", "reason"),
    [
        ('{"since": "10000-01-01"}', f"since '10000-01-01' is not a date {RANGE}"),
        ('{"until": 20240101}', f"until 20240101 is not a date {RANGE}"),
        (
            '{"since": "2024-02-01", "until": "2024-01-01"}',
            "since '2024-02-01' is after until '2024-01-01'",
        ),
        ('{"full_refresh": "yes"}', "full_refresh 'yes' is not a boolean"),
        ('{"region": ["ca"]}', "params must be a JSON object of strings: 'region' is a JSON array"),
        ("[]", "its params are a JSON array, not a JSON object"),
        ('{"a": ' + "[" * 5000 + "]" * 5000 + "}", "params are nested too deeply to read"),
    ],
)
def test_a_run_cut_short_whose_record_no_run_can_take_is_refused(recorded, reason) -> None:
    with pytest.raises(RequestRefused) as refused:
        resume_request(CutShortRun("plain", 41, recorded))
    assert str(refused.value) == reason


def test_a_credential_is_cleared_from_what_the_queue_keeps_and_nothing_else() -> None:
    assert cleared({"api_key": "s3cr3t", "region": "ca"}) == {"api_key": "***", "region": "ca"}
    assert cleared({"region": "ca", "keyword": "x"}) is None  # nothing to change
