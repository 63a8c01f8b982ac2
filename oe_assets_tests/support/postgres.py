"""A real PostgreSQL server for the tests: Debian's `postgresql` package, started by the tests
themselves (`initdb` in a temporary folder, `pg_ctl` on a free loopback port, stopped at the end).

The server asks for a password over TCP (scram-sha-256), as a team's server does, so a test can
check that the password shows nowhere. `initdb` refuses to run as root (CI runs as root): then the
server runs as the `postgres` user the package creates, in a folder that user owns.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest

from oe_assets_tests.support.ui_support import free_port

SUPERUSER = "oe_test"
INSTALL_HINT = "install Debian's postgresql package (apt-get install postgresql); .ci/run does"


@dataclass(frozen=True)
class PostgresServer:
    """A running server on 127.0.0.1: its port, its superuser and that user's password."""

    port: int
    user: str
    password: str
    folder: Path

    host: str = "127.0.0.1"

    @contextlib.contextmanager
    def connect(self, database: str = "postgres") -> Iterator[psycopg2.extensions.cursor]:
        """A cursor of a connection in autocommit (DDL such as CREATE DATABASE needs it), closed after."""
        conn = psycopg2.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=database
        )
        conn.autocommit = True
        try:
            with conn.cursor() as cursor:
                yield cursor
        finally:
            conn.close()

    def create_database(self, name: str) -> str:
        with self.connect() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        return name

    def query(self, database: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.connect(database) as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())


def postgres_bin() -> Path:
    """The folder of the newest installed server's programs (Debian keeps them off PATH)."""
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    if folders and (Path(folders[-1]) / "initdb").exists():
        return Path(folders[-1])
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError(f"The PostgreSQL tests need a PostgreSQL server: {INSTALL_HINT}.")
    return Path(initdb).parent


def _server_user() -> dict[str, Any]:
    """``subprocess`` arguments that run the server's programs as a user initdb accepts."""
    if os.geteuid() != 0:
        return {}
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(
            f"Running as root, the PostgreSQL tests need the postgres user: {INSTALL_HINT}."
        ) from None
    return {"user": "postgres", "group": "postgres"}


def _owned_folder(as_user: dict[str, Any]) -> Path:
    """A new folder the server's user owns (pytest's own folders are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="oe_pg_"))
    if as_user:
        shutil.chown(folder, as_user["user"], as_user["group"])
    return folder


def _run(command: list[str], as_user: dict[str, Any], cwd: Path) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=cwd, **as_user)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(command[0]).name} failed ({done.returncode}): {done.stdout}{done.stderr}")


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """initdb, start on a free port, yield; then stop (fast mode) and remove the folder."""
    binaries, as_user = postgres_bin(), _server_user()
    folder = _owned_folder(as_user)
    password = secrets.token_urlsafe(16)
    password_file = folder / "pwfile"
    password_file.write_text(password)
    if as_user:
        shutil.chown(password_file, as_user["user"], as_user["group"])
    data = folder / "data"
    _run(
        [str(binaries / "initdb"), "-D", str(data), "-U", SUPERUSER, f"--pwfile={password_file}",
         "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--locale=C.UTF-8"],
        as_user, folder,
    )  # fmt: skip
    password_file.unlink()
    port = free_port()
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off"
    log = folder / "server.log"
    _run(
        [str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"],
        as_user,
        folder,
    )
    try:
        yield PostgresServer(port=port, user=SUPERUSER, password=password, folder=folder)
    finally:
        _run([str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], as_user, folder)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One server per test process (each xdist worker starts its own), shared by its tests."""
    with running_postgres() as server:
        yield server
