"""Where a run's study lives: the storage URL and opening it.

SQLite (the default, a file in the run directory), `journal:<path>` (Optuna's JournalFileBackend:
several processes on one machine) or any Optuna RDB URL (PostgreSQL, MySQL: several machines).
SQLite transactions are made to take the database lock when they begin, so that two processes
cannot pop the same waiting trial (SQLite has no SELECT ... FOR UPDATE).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from search.config import UserError

JOURNAL_PREFIX = "journal:"


class SchedulerError(Exception):
    """The study cannot do what was asked; the message names the trial or study."""


def storage_url(url: str | None, run_dir: Path) -> str:
    """The storage a run's study lives in, as a URL.

    Args:
        url: None for the default SQLite file in the run directory; `journal:<path>` for an Optuna
            journal file (a relative path is taken inside `run_dir`); any other Optuna RDB URL
            (`sqlite:///...`, `postgresql://...`, `mysql://...`) is passed through.
        run_dir: the run's directory (outputs/<run>/).

    Returns:
        `sqlite:///<run_dir>/study.db`, `journal:<absolute path>`, or `url` itself.

    Raises:
        ValueError: if `url` is neither a journal marker with a path nor a database URL.
    """
    if url is None:
        return f"sqlite:///{(Path(run_dir) / 'study.db').resolve()}"
    if url.startswith(JOURNAL_PREFIX):
        path = url[len(JOURNAL_PREFIX):]
        if not path:
            raise UserError(f"storage {url!r} names no journal file; write journal:<path>")
        return JOURNAL_PREFIX + str((Path(run_dir) / path).resolve())
    if "://" not in url:
        raise UserError(f"storage {url!r} is not understood; give null (SQLite in the run "
                         "directory), journal:<path>, or a database URL such as "
                         "postgresql://user@host/db")
    return url


def open_storage(url: str) -> BaseStorage:
    if url.startswith(JOURNAL_PREFIX):
        path = Path(url[len(JOURNAL_PREFIX):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if not url.startswith("sqlite:///"):
        return RDBStorage(url)
    Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    storage = RDBStorage(url)
    _serialise_sqlite(storage.engine)
    return storage


def load_existing(url: str, study_name: str) -> tuple[BaseStorage, optuna.Study]:
    """Open a study that must already exist, creating no file, table or study."""
    where = url[len("sqlite:///"):] if url.startswith("sqlite:///") else \
        url[len(JOURNAL_PREFIX):] if url.startswith(JOURNAL_PREFIX) else None
    if where is not None and not Path(where).is_file():
        raise SchedulerError(f"there is no study at {where}")
    # Plain connections (no BEGIN IMMEDIATE): a reader must not hold up a running search's writes.
    storage = RDBStorage(url) if url.startswith("sqlite:///") else open_storage(url)
    try:
        return storage, optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        raise SchedulerError(f"{url} holds no study named {study_name!r}") from None


def _serialise_sqlite(engine: Any) -> None:
    """Make every SQLite transaction take the write lock when it begins (BEGIN IMMEDIATE).

    Optuna pops a waiting trial by reading its state and then updating it in one transaction,
    which relies on SELECT ... FOR UPDATE; SQLite ignores that, so two processes could both pop
    the same trial. Taking the lock at BEGIN serialises them. (SQLAlchemy's recipe for pysqlite:
    the driver's own transaction handling off, BEGIN emitted by SQLAlchemy.)
    """
    engine.dispose()  # connections opened while Optuna set the schema up lack the hooks

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    def on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    sqlalchemy.event.listen(engine, "connect", on_connect)
    sqlalchemy.event.listen(engine, "begin", on_begin)
