"""Credentials named by environment variables: sent as each kind says, masked everywhere from the
moment they are read, never carried to another host, never kept in a saved next link."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

from config import Settings
from tests.support import Seen, StubServer
from worker import ApiKey, Basic, Bearer, LinkHeader
from worker.errors import MissingSecret, SourceError
from worker.redact import redact
from worker.source.http import Session

TOKEN = "unit-T0ken-distinct-4242"


@pytest.fixture
def api() -> Iterator[StubServer]:
    server = StubServer(lambda seen: (200, {}, b'{"items": [1]}'))
    yield server
    server.close()


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_TOKEN", TOKEN)
    monkeypatch.setenv("SHOP_USER", "someone")


def sent(api: StubServer, auth: object) -> Seen:
    Session(Settings()).get_json(api.url("/things?page=1"), auth=auth)
    return api.requests[-1]


def test_a_bearer_token_goes_in_the_authorization_header(api):
    seen = sent(api, Bearer("SHOP_TOKEN"))

    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"


def test_an_api_key_goes_in_a_header_or_in_the_query(api):
    in_header = sent(api, ApiKey("SHOP_TOKEN", header="X-Shop-Key"))
    in_query = sent(api, ApiKey("SHOP_TOKEN", query="key"))

    assert in_header.headers["X-Shop-Key"] == TOKEN
    assert in_header.query == {"page": ["1"]}
    assert in_query.query == {"page": ["1"], "key": [TOKEN]}
    assert "X-Shop-Key" not in in_query.headers


def test_basic_auth_takes_a_user_and_an_optional_password(api):
    both = sent(api, Basic("SHOP_USER", "SHOP_TOKEN"))
    user_only = sent(api, Basic("SHOP_TOKEN"))

    assert (
        both.headers["Authorization"]
        == "Basic " + base64.b64encode(f"someone:{TOKEN}".encode()).decode()
    )
    assert (
        user_only.headers["Authorization"]
        == "Basic " + base64.b64encode(f"{TOKEN}:".encode()).decode()
    )


def test_every_value_read_is_masked_and_no_repr_shows_it():
    auths = [
        Bearer("SHOP_TOKEN"),
        ApiKey("SHOP_TOKEN", query="key"),
        Basic("SHOP_USER", "SHOP_TOKEN"),
    ]
    basic = base64.b64encode(f"someone:{TOKEN}".encode()).decode()

    assert redact(f"token {TOKEN}, header Basic {basic}") == "token ***, header Basic ***"
    assert [repr(a) for a in auths] == ["Bearer(***)", "ApiKey(***, query='key')", "Basic(***)"]


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: Bearer("NO_SUCH_TOKEN"), "the environment has no NO_SUCH_TOKEN (Bearer)"),
        (lambda: ApiKey("NO_SUCH_KEY"), "the environment has no NO_SUCH_KEY (ApiKey)"),
        (lambda: Basic("SHOP_USER", "NO_PASSWORD"), "the environment has no NO_PASSWORD (Basic)"),
    ],
)
def test_a_missing_variable_is_one_line_naming_it(make, error, monkeypatch):
    monkeypatch.setenv("NO_SUCH_KEY", "")  # empty counts as missing

    with pytest.raises(MissingSecret) as raised:
        make()

    assert str(raised.value) == error


def test_credentials_are_not_carried_to_another_host_by_a_redirect():
    other = StubServer(lambda seen: (200, {}, b"{}"))
    port = other.url("/").split(":")[-1].rstrip("/")
    # Same port, other host name: requests would keep headers for 127.0.0.1 itself.
    here = StubServer(
        lambda seen: (
            (302, {"Location": f"http://localhost:{port}/landing"}, b"")
            if seen.path == "/start"
            else (200, {}, b"{}")
        )
    )
    try:
        http = Session(Settings())
        http.get_json(here.url("/start"), auth=ApiKey("SHOP_TOKEN", header="X-Shop-Key"))
        http.get_json(here.url("/start"), auth=Bearer("SHOP_TOKEN"))
    finally:
        here.close()
        other.close()

    assert [s.headers.get("X-Shop-Key") for s in here.requests] == [TOKEN, None]
    assert [s.path for s in other.requests] == ["/landing", "/landing"]
    for seen in other.requests:
        assert "X-Shop-Key" not in seen.headers
        assert "Authorization" not in seen.headers


def test_a_query_key_a_server_echoes_into_its_next_link_is_not_kept_in_the_position():
    def answer(seen: Seen) -> tuple[int, dict[str, str], bytes]:
        if seen.query.get("page") == ["2"]:
            return 200, {}, b'{"items": [2]}'
        return 200, {"Link": f'</things?page=2&key={TOKEN}>; rel="next"'}, b'{"items": [1]}'

    server = StubServer(answer)
    try:
        auth = ApiKey("SHOP_TOKEN", query="key")
        pages = list(
            Session(Settings()).pages(server.url("/things"), LinkHeader(), items="items", auth=auth)
        )
    finally:
        server.close()

    assert pages[0].next == {"url": f"{server.url('/things')}?page=2"}
    assert [s.query for s in server.requests] == [{"key": [TOKEN]}, {"page": ["2"], "key": [TOKEN]}]


def test_an_error_names_the_request_without_the_query_key():
    server = StubServer(lambda seen: (500, {}, b"{}"))
    try:
        with pytest.raises(SourceError) as raised:
            Session(Settings(http_retries=0)).get_json(
                server.url("/things"), auth=ApiKey("SHOP_TOKEN", query="key")
            )
    finally:
        server.close()

    assert str(raised.value) == f"GET {server.url('/things')} answered 500 Internal Server Error"
    assert TOKEN not in json.dumps(str(raised.value))
