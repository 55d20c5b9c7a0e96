"""The README's status-page example runs as written: its `myapp.py` block served by gunicorn, as
its Procfile line says, with the page mounted under /status beside the app's own pages; and the
page refuses to start without its password."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from config import ConfigError, Settings
from tests.browser.conftest import STATUS_PASSWORD
from tests.conftest import ROOT, assert_no_secrets
from tests.support import LogTail, free_port, wait_for
from worker.web import create_app

pytestmark = pytest.mark.timeout(180)


def readme_block(first_line: str) -> str:
    """The README's ```python block that starts with `first_line`."""
    text = (ROOT / "README.md").read_text()
    [block] = re.findall(rf"```python\n({re.escape(first_line)}\n.*?)```", text, flags=re.DOTALL)
    return block


def test_the_readme_mounts_the_page_under_a_prefix_of_an_existing_app(tmp_path: Path, cli, db):
    assert cli("run", "earthquakes").returncode == 0
    (tmp_path / "myapp.py").write_text(readme_block("# myapp.py"))
    port = free_port()
    env = {**cli.env, "PYTHONPATH": f"{ROOT}:{tmp_path}", "STATUS_PASSWORD": STATUS_PASSWORD}
    process = subprocess.Popen(  # the README's `web: gunicorn myapp:app`, on loopback
        [sys.executable, "-m", "gunicorn", "myapp:app", "--bind", f"127.0.0.1:{port}",
         "--no-control-socket"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    out, err = LogTail(process.stdout), LogTail(process.stderr)
    base = f"http://127.0.0.1:{port}"
    operator = requests.Session()
    operator.auth = ("nightshift", STATUS_PASSWORD)

    def home() -> requests.Response | None:
        assert process.poll() is None, err.raw[-5:]
        try:
            return requests.get(base + "/", timeout=5)
        except requests.ConnectionError:
            return None

    try:
        assert wait_for(home, 30, "the app to answer").text == "the app's own home page"
        assert requests.get(base + "/status/", timeout=5).status_code == 401

        page = operator.get(base + "/status/", timeout=10)
        assert page.status_code == 200
        assert 'tr class="job" data-job="earthquakes"' in page.text
        assert 'href="/status/runs"' in page.text and 'href="/status/runs/1"' in page.text
        assert 'action="/status/jobs/earthquakes/run"' in page.text
        assert page.cookies.keys() == ["nightshift_status"]
        assert [c.path for c in operator.cookies] == ["/status/"]

        history = operator.get(base + "/status/runs?job=earthquakes", timeout=10)
        assert 'data-run-id="1"' in history.text

        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]
        queued = operator.post(
            base + "/status/jobs/earthquakes/run", data={"csrf_token": token}, timeout=10
        )
        assert queued.url == base + "/status/"
        assert "earthquakes: queued (request 1)" in queued.text
        assert db.scalar("SELECT job FROM nightshift.triggers WHERE id = 1") == "earthquakes"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=25)
        finally:
            process.kill()
    output = out.text() + err.text()
    assert_no_secrets(output, db.url)
    assert STATUS_PASSWORD not in output


def test_without_a_status_password_the_page_refuses_to_start_saying_why(cli, db):
    result = cli("web", "--host", "127.0.0.1", PORT="1")  # a port it must never get to bind

    assert result.returncode == 1
    assert result.stderr == (
        "error: STATUS_PASSWORD is not set: the status page serves nothing without a password"
        " (set one with `heroku config:set`, or in the environment)\n"
    )
    assert "Traceback" not in result.stderr + result.stdout
    with pytest.raises(ConfigError, match=r"^STATUS_PASSWORD is not set"):
        create_app(Settings.from_env({"DATABASE_URL": db.url}), jobs={})
