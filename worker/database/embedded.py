"""A local PostgreSQL cluster from the machine's binaries: the default without DATABASE_URL.

It lives under `.data/` (git-ignored), listens on 127.0.0.1 only, and is started on first use
and left running for the next command (`make db-stop` stops it). initdb and postgres refuse to
run as root, so as root they run as the `postgres` OS user. Tests use the same class for their
throwaway servers.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from worker.database.errors import DatabaseUnavailable

DATABASE = "nightshift"
SUPERUSER = "postgres"


def find_bindir() -> Path:
    """The newest PostgreSQL server binaries on this machine."""
    override = os.environ.get("PG_BINDIR")
    candidates = [override] if override else []
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).resolve().parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    raise DatabaseUnavailable(
        "no PostgreSQL server binaries found (initdb); install them with "
        "`apt-get install postgresql` or set DATABASE_URL"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """One PostgreSQL data directory and the server that runs it."""

    def __init__(self, home: Path, port: int | None = None, bindir: Path | None = None) -> None:
        self.home = Path(home)
        self.data = self.home / "pgdata"
        self.log = self.home / "postgres.log"
        self.bindir = bindir or find_bindir()
        self._port = port
        self._as_postgres = os.geteuid() == 0

    # -- facts ------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            port_file = self.home / "port"
            if port_file.exists():
                self._port = int(port_file.read_text().strip())
            else:
                self._port = free_port()
                port_file.write_text(f"{self._port}\n")
        return self._port

    def url(self, database: str = DATABASE, user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def running(self) -> bool:
        if not self.initialized():
            return False
        result = self._pg("pg_ctl", "-D", str(self.data), "status", check=False)
        return result.returncode == 0

    # -- actions ----------------------------------------------------------------------------
    def ensure_started(self) -> bool:
        """Create and start the cluster if need be. True when this call started it."""
        if self.running():
            return False
        self.init()
        self.start()
        self.create_database(DATABASE)
        return True

    def init(self) -> None:
        """initdb, once. Local connections are trusted: it listens on 127.0.0.1 only."""
        self.home.mkdir(parents=True, exist_ok=True)
        self._hand_over(self.home)
        if not self.initialized():
            self._pg(
                "initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
            )  # fmt: skip

    def start(self, *extra: str) -> None:
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.home}",
                *extra,
            ]
        )
        self._pg(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "start",
            "-o",
            options,
        )

    def stop(self, mode: str = "fast") -> None:
        if self.initialized():
            self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def create_database(self, name: str) -> None:
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if exists.strip() != "1":
            self.psql(f'CREATE DATABASE "{name}"')

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [
                str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", database,
                "-c", sql,
            ],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise DatabaseUnavailable(f"psql failed: {result.stderr.strip()}")
        return result.stdout

    # -- plumbing ---------------------------------------------------------------------------
    def _hand_over(self, path: Path) -> None:
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(path, user.pw_uid, user.pw_gid)

    def _pg(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bindir / program), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(
            command, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
        )
        if check and result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise DatabaseUnavailable(f"{program} failed: {detail[0]} (log: {self.log})")
        return result


def reachable_home(preferred: Path) -> Path:
    """`preferred`, or a stand-in under /var/tmp when the postgres user cannot reach it."""
    if os.geteuid() != 0:
        return preferred
    preferred.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(
        ["runuser", "-u", "postgres", "--", "test", "-x", str(preferred)], check=False
    )
    if probe.returncode == 0:
        return preferred
    digest = hashlib.sha1(str(preferred.resolve()).encode()).hexdigest()[:12]
    fallback = Path("/var/tmp") / f"nightshift-{digest}"
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def default_cluster(data_dir: Path) -> Cluster:
    return Cluster(reachable_home(data_dir / "pg"))


def main(argv: list[str]) -> int:
    """`python -m worker.database stop|status`."""
    from config import Settings

    cluster = default_cluster(Settings.from_env().data_dir)
    command = argv[0] if argv else "status"
    if command == "stop":
        cluster.stop()
        print("embedded PostgreSQL stopped")
    elif command == "status":
        print(
            f"embedded PostgreSQL: {'running' if cluster.running() else 'stopped'}"
            f" at {cluster.home} on 127.0.0.1:{cluster.port}"
        )
    else:
        print("usage: python -m worker.database stop|status", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
