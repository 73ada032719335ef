"""An experiment's PostgreSQL schema (``bb_<name>``): its name, our two tables beside Optuna's
(``blackbox_claims``: an image's lease; ``blackbox_results``: its record, written once), the statements
that take, renew, release and finish a lease, and the storage opened inside the schema.
"""

from __future__ import annotations

import re
import zlib

from optuna.storages import RDBStorage

from blackbox.experiment.worker_storage import WorkerStorage, retry_stale_trials
from targets import ConfigError

CREATE_TABLES = (
    """CREATE TABLE IF NOT EXISTS blackbox_claims (
        image TEXT PRIMARY KEY,
        state TEXT NOT NULL CHECK (state IN ('running', 'released', 'done')),
        worker TEXT NOT NULL,
        heartbeat TIMESTAMPTZ NOT NULL DEFAULT now(),
        attempts INTEGER NOT NULL DEFAULT 1)""",
    """CREATE TABLE IF NOT EXISTS blackbox_results (
        image TEXT PRIMARY KEY,
        worker TEXT NOT NULL,
        record TEXT NOT NULL,
        finished TIMESTAMPTZ NOT NULL DEFAULT now())""",
)
CLAIM = """
INSERT INTO blackbox_claims AS c (image, state, worker) VALUES (:image, 'running', :worker)
ON CONFLICT (image) DO UPDATE SET state = 'running', worker = EXCLUDED.worker, heartbeat = now(),
    attempts = c.attempts + 1
WHERE c.state = 'released' OR (c.state = 'running' AND c.heartbeat < now() - make_interval(secs => :lease))
RETURNING c.attempts"""
HELD = "WHERE image = :image AND worker = :worker AND state = 'running'"
RENEW = f"UPDATE blackbox_claims SET heartbeat = now() {HELD}"
RELEASE = f"UPDATE blackbox_claims SET state = 'released' {HELD}"
FINISH = f"UPDATE blackbox_claims SET state = 'done', heartbeat = now() {HELD}"
SAVE_RESULT = """INSERT INTO blackbox_results (image, worker, record) VALUES (:image, :worker, :record)
ON CONFLICT (image) DO NOTHING"""


def schema_for(name: str) -> str:
    """A PostgreSQL schema name for an experiment: ``bb_`` + lower-case letters, digits and ``_``."""
    cleaned = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    if not cleaned:
        raise ConfigError(f"storage.experiment={name!r} has no letters or digits to name a schema with")
    return f"bb_{cleaned}"[:63]


def _engine_kwargs(schema: str) -> dict:
    # Every connection of this experiment works inside its schema: Optuna's tables are created there.
    return {"connect_args": {"options": f"-csearch_path={schema}"}, "pool_pre_ping": True}


def open_storage(
    url: str, schema: str, *, heartbeat_interval: float, grace_period: float, max_retry: int
) -> WorkerStorage:
    """A worker's storage in ``schema`` (created with its tables if missing, one worker at a time);
    :class:`ConfigError` when the database cannot be reached."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    admin = sqlalchemy.create_engine(url, poolclass=NullPool)
    lock_key = zlib.crc32(schema.encode())
    try:
        with admin.connect() as connection:
            # Workers starting together would race to create the same tables: one at a time.
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": lock_key})
            try:
                connection.execute(sqlalchemy.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
                connection.commit()
                storage = WorkerStorage(
                    url,
                    engine_kwargs=_engine_kwargs(schema),
                    heartbeat_interval=heartbeat_interval,  # type: ignore[arg-type]
                    grace_period=grace_period,  # type: ignore[arg-type]
                    **retry_stale_trials(max_retry),
                )
                with storage.engine.begin() as tables:
                    for statement in CREATE_TABLES:
                        tables.execute(sqlalchemy.text(statement))
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key})
                connection.commit()
    except sqlalchemy.exc.OperationalError as error:
        raise ConfigError(f"cannot reach PostgreSQL at {_redacted(url)}: {error.orig}") from error
    finally:
        admin.dispose()
    return storage


def open_reading_storage(url: str, schema: str, name: str) -> RDBStorage:
    """A plain storage in the existing ``schema`` of experiment ``name`` (the dashboard, replay);
    :class:`ConfigError` when the database cannot be reached or holds no such experiment."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            found = connection.execute(
                sqlalchemy.text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :s"),
                {"s": schema},
            ).first()
    except sqlalchemy.exc.OperationalError as error:
        raise ConfigError(f"cannot reach PostgreSQL at {_redacted(url)}: {error.orig}") from error
    finally:
        engine.dispose()
    if found is None:
        raise ConfigError(f"no experiment {name!r} (schema {schema}) in {_redacted(url)}")
    return RDBStorage(url, engine_kwargs=_engine_kwargs(schema), skip_compatibility_check=True)


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)
