"""A throwaway PostgreSQL server on 127.0.0.1 for the several-machine tests (Debian's package).

The server runs from a fresh data directory with trust authentication and no fsync, on a free
port, and is stopped (immediate mode) afterwards. As root it runs as the `postgres` user, since
PostgreSQL refuses to run as root. Without PostgreSQL installed the tests that need it skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class PostgresServer:
    url: str  # a SQLAlchemy URL of the database `evo`
    port: int
    data: Path
    as_user: list[str]
    bindir: Path

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                        "stop"], capture_output=True, text=True, timeout=60)
        shutil.rmtree(self.data.parent, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_postgres() -> PostgresServer:
    """Start a server with an empty database `evo`; skips the test if PostgreSQL or psycopg2 is missing."""
    pytest.importorskip("psycopg2", reason="psycopg2 (pip install -e '.[postgres]') is needed for PostgreSQL")
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb") or ""]
    if not found[-1]:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql; .ci/run installs it)")
    bindir = Path(found[-1]).parent
    base = Path(tempfile.mkdtemp(prefix="evoresearch-pg-"))
    data = base / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
        os.chown(base, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {done.stdout}{done.stderr}")

    run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-w", "-o",
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100", "start")
    run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "evo")
    return PostgresServer(url=f"postgresql+psycopg2://postgres@127.0.0.1:{port}/evo", port=port, data=data,
                          as_user=as_user, bindir=bindir)
