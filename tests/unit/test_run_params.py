"""A run's parameters named like credentials: the job gets them, the record keeps `***`, and a
run recorded that way is refused a resume rather than handed the mask."""

from __future__ import annotations

import pytest

from config import ConfigError
from worker.redact import redact
from worker.run.request import RunRequest

VALUE = "unit-cr3dential-v4lue"


def test_a_request_keeps_the_real_value_and_records_it_masked():
    request = RunRequest(params={"api_key": VALUE, "region": "ca"})

    assert request.params == {"api_key": VALUE, "region": "ca"}
    assert request.recorded_params() == {"api_key": "***", "region": "ca"}


def test_a_credential_parameter_is_masked_in_any_text_from_then_on():
    RunRequest(params={"client_secret": VALUE})

    assert redact(f"upstream said: {VALUE} is wrong") == "upstream said: *** is wrong"


def test_a_resume_of_a_run_whose_credential_was_masked_is_refused_naming_it():
    with pytest.raises(ConfigError) as refused:
        RunRequest.resuming(12, {"api_key": "***", "password": "***", "region": "ca"})

    assert str(refused.value) == (
        "run 12 cannot be resumed: its parameter(s) api_key, password held a credential, which"
        " the run history does not keep; queue the run again with the value"
    )


def test_a_resume_of_a_run_without_a_masked_credential_takes_its_parameters():
    request = RunRequest.resuming(12, {"region": "***", "since": "2024-01-01"})

    assert (request.params, request.since.isoformat(), request.resumes) == (
        {"region": "***"},
        "2024-01-01",
        12,
    )
