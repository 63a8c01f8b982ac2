"""Talking to a PostgreSQL server: connecting, failures as one sentence, and bulk rows in.

Every failure a user can meet (the server cannot be reached, the password or database is wrong,
a privilege is missing, the server is too old, the connection is lost) becomes one sentence that
names the setting and the server without its password. Rows always go in with ``COPY ... FROM
STDIN``: DuckDB writes them as CSV, PostgreSQL reads the CSV, never a row at a time.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import psycopg
from pyarrow import csv as pa_csv

from oe_assets.config.secret import redact
from oe_assets.warehouse.postgres.url import PostgresUrl

PgConnection = psycopg.Connection[tuple[object, ...]]
COPY_BATCH_ROWS = 50_000
"""Rows per piece of a COPY: what the client holds of a table at once."""
CONNECTION_TIMEOUTS = {
    "connect_timeout": 10,
    # A server that vanishes without closing the connection (a network cut, a host gone) ends the
    # work within minutes instead of leaving it waiting: keepalives while we wait for an answer,
    # and a limit on data the server does not acknowledge while we send.
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 6,
    "tcp_user_timeout": 120_000,
}
OLDEST_SERVER = 150000
"""PostgreSQL 15: the first with ``MERGE``, which the event log's script uses."""


class PostgresWarehouseError(RuntimeError):
    """What went wrong with a PostgreSQL server, in one sentence naming the setting or the table."""


@contextmanager
def connected(
    target: PostgresUrl,
    setting: str,
    *,
    work: str = "copy",
    oldest: int | None = None,
    schema: str | None = None,
) -> Iterator[PgConnection]:
    """A connection to ``target``; a failure is one sentence naming ``setting`` and the ``work``
    (``copy``, ``write``) it stopped. ``oldest``: the server version the work needs at least;
    ``schema``: the schema unqualified names mean (default: the server's ``search_path``).

    The connection is in autocommit: every write is inside an explicit ``conn.transaction()``
    block, so no statement ever joins a transaction that a read opened without saying so."""
    try:
        options = {"options": f"-c search_path={schema}"} if schema else {}
        conn = psycopg.connect(**target.connect_kwargs(), **CONNECTION_TIMEOUTS, **options, autocommit=True)  # type: ignore[arg-type]
    except psycopg.Error as error:
        raise PostgresWarehouseError(
            f"{setting} {target.shown}: cannot connect: {reason_of(error)}"
        ) from None
    try:
        if oldest is not None and conn.info.server_version < oldest:
            raise PostgresWarehouseError(
                f"{setting} {target.shown}: the server runs PostgreSQL {_version(conn.info.server_version)}, "
                f"and the warehouse needs {_version(oldest)} or newer"
            )
        yield conn
    except psycopg.errors.InsufficientPrivilege as error:
        raise PostgresWarehouseError(
            f"{setting} {target.shown}: user {target.user} lacks a privilege the {work} needs: {reason_of(error)}"
        ) from None
    except psycopg.OperationalError as error:  # the server went away: it rolls back what was not committed
        raise PostgresWarehouseError(
            f"{setting} {target.shown}: the connection was lost ({reason_of(error)}); nothing of this {work} "
            "was committed, run it again"
        ) from None
    finally:
        conn.close()


@contextmanager
def one_snapshot(conn: PgConnection) -> Iterator[None]:
    """Reads that see the warehouse at one instant, while other runs keep writing: a REPEATABLE
    READ, read-only transaction when ``conn`` is outside any (the isolation level is set by the
    transaction's first statement); inside a transaction the caller has open, that transaction's
    view (a savepoint)."""
    outermost = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with conn.transaction():
        if outermost:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def _version(number: int) -> str:
    major, minor = divmod(number, 10000)
    return f"{major}.{minor}" if minor else str(major)


def reason_of(error: psycopg.Error) -> str:
    """PostgreSQL's own reason in one line (``password authentication failed for user "x"``,
    ``Connection refused``), with any secret alive in this process masked."""
    diag = getattr(error, "diag", None)
    text = diag.message_primary if diag is not None and diag.message_primary else str(error)
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)
    reason = first.split("FATAL:", 1)[1] if "FATAL:" in first else first.rsplit(" failed: ", 1)[-1]
    return redact(reason.strip())


def copy_in(
    source: duckdb.DuckDBPyConnection, select: str, conn: PgConnection, target: str, what: str
) -> int:
    """The rows of DuckDB's ``select`` into PostgreSQL's ``target`` (``table (columns)``) with one
    ``COPY FROM STDIN``; returns the rows PostgreSQL took. A value PostgreSQL refuses is a
    :class:`PostgresWarehouseError` naming ``what`` (the table) and the line.

    The rows stream as CSV written by Arrow, a batch at a time: an empty string is ``""``, NULL an
    empty field, a double its shortest exact form (``inf``, ``nan``), a time ISO-8601, as
    PostgreSQL reads them; no file is written."""
    options = pa_csv.WriteOptions(include_header=False, quoting_style="needed")
    try:
        # The reader is closed however the COPY ends: DuckDB cannot close a connection whose
        # result is still being read (a lost PostgreSQL connection would leave it spinning).
        with source.execute(select).to_arrow_reader(COPY_BATCH_ROWS) as batches, conn.cursor() as cursor:
            with cursor.copy(f"COPY {target} FROM STDIN (FORMAT csv)") as copy:
                for batch in batches:
                    buffer = io.BytesIO()
                    pa_csv.write_csv(batch, buffer, options)
                    copy.write(buffer.getbuffer())
            return cursor.rowcount
    except psycopg.errors.DataError as error:
        context = (error.diag.context or "").splitlines()[0] if error.diag.context else ""
        raise PostgresWarehouseError(
            f"{what}: PostgreSQL refused a value ({reason_of(error)}; {context}); nothing was written"
        ) from None
