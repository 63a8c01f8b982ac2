"""The Celonis stand-in, exercised through real HTTP (httpx) with Parquet chunks written by pyarrow."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from oe_assets.celonis_simulator import CelonisFaults, CelonisSimulatorServer

POOL = "oe-demo-pool"
CONNECTION = "oe-push-connection"
OLD = f"/integration/api/v1/data-push/{POOL}/jobs"
NEW = f"/data-ingestion/api/v1/data-push/{POOL}/jobs"
API = f"/integration/api/pools/{POOL}"
V1 = f"/integration/api/v1/data-pools/{POOL}"
CLIENT = ("celonis-demo-client", "celonis-demo-secret")


def parquet(columns: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def get_token(client: httpx.Client, scope: str = "integration.data-pools") -> str:
    r = client.post("/oauth2/token", data={"grant_type": "client_credentials", "scope": scope}, auth=CLIENT)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


class Celonis:
    """A small authenticated caller: push jobs end to end, data models, polling."""

    def __init__(self, srv: CelonisSimulatorServer, scope: str = "integration.data-pools") -> None:
        self.srv = srv
        self.http = httpx.Client(base_url=srv.url, timeout=10)
        self.token = get_token(self.http, scope)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, headers=self.auth, **kwargs)

    def create(self, prefix: str = OLD, **job: Any) -> dict[str, Any]:
        r = self.call("POST", f"{prefix}/", json=job)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def chunk(self, job_id: str, data: bytes, kind: str = "upserted", prefix: str = OLD) -> httpx.Response:
        return self.call("POST", f"{prefix}/{job_id}/chunks/{kind}", files={"file": ("file", data)})

    def wait(self, job_id: str, prefix: str = OLD) -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            job = self.call("GET", f"{prefix}/{job_id}").json()
            if job["status"] in ("DONE", "ERROR"):
                return dict(job)
            time.sleep(0.01)
        raise AssertionError(f"job {job_id} did not finish")

    def push(
        self, upserts: list[bytes], deletes: list[bytes] | None = None, prefix: str = OLD, **job: Any
    ) -> dict[str, Any]:
        """Create, add chunks, execute, poll until DONE/ERROR; the final job."""
        created = self.create(prefix, **job)
        for data in upserts:
            assert self.chunk(created["id"], data, prefix=prefix).status_code == 200
        for data in deletes or []:
            assert self.chunk(created["id"], data, "deleted", prefix=prefix).status_code == 200
        r = self.call("POST", f"{prefix}/{created['id']}")
        assert r.status_code == 200, r.text
        return self.wait(created["id"], prefix)

    def load_info(self, dm: str) -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            info = self.call("GET", f"{API}/data-models/{dm}/load-history/load-info-sync").json()
            current = info["loadInfo"]["currentComputeLoad"]
            if current and current["loadStatus"] != "RUNNING":
                return dict(info)
            time.sleep(0.01)
        raise AssertionError("the load did not finish")


@pytest.fixture
def srv() -> Iterator[CelonisSimulatorServer]:
    with CelonisSimulatorServer(job_delay=0.01) as server:
        yield server
        assert server.internal_errors == []


@pytest.fixture
def api(srv: CelonisSimulatorServer) -> Iterator[Celonis]:
    caller = Celonis(srv)
    yield caller
    caller.http.close()


# ----------------------------------------------------------------------------- auth


def test_token_by_basic_form_multipart_and_query(srv: CelonisSimulatorServer) -> None:
    with httpx.Client(base_url=srv.url) as c:
        basic = c.post("/oauth2/token", data={"grant_type": "client_credentials"}, auth=CLIENT)
        form = {"grant_type": "client_credentials", "client_id": CLIENT[0], "client_secret": CLIENT[1]}
        posted = c.post("/oauth2/token", data={**form, "scope": "integration.data-pools:data_push bogus"})
        multipart = c.post("/oauth2/token", files={k: (None, v) for k, v in form.items()})
        query = c.post("/oauth2/token", params={**form, "scope": "integration.data-pools"})
        bad = c.post("/oauth2/token", data={**form, "client_secret": "wrong"})
    for r in (basic, posted, multipart, query):
        assert r.status_code == 200, r.text
        assert r.json()["token_type"] == "Bearer"
        assert r.json()["expires_in"] == 899
    assert posted.json()["scope"] == "integration.data-pools:data_push"
    assert query.json()["scope"] == "integration.data-pools"
    assert bad.status_code == 401
    assert bad.json() == {"error": "invalid_client", "error_description": "Bad client credentials"}
    assert srv.tokens_issued == 4


def test_api_auth_schemes_scopes_and_401_403(srv: CelonisSimulatorServer) -> None:
    with httpx.Client(base_url=srv.url) as c:
        push_only = get_token(c, "integration.data-pools:data_push")
        read_only = get_token(c, "integration.data-pools:read")

        def status(path: str, header: str, method: str = "GET") -> int:
            return c.request(method, path, headers={"Authorization": header} if header else {}).status_code

        assert status(f"{OLD}/", "") == 401
        assert status(f"{OLD}/", "Bearer nonsense") == 401
        assert status(f"{OLD}/", "Bearer celonis-demo-api-key") == 200
        assert status(f"{OLD}/", "AppKey celonis-demo-app-key") == 200
        assert status(f"{OLD}/", "AppKey celonis-demo-api-key") == 401
        assert status(f"{OLD}/", f"Bearer {push_only}") == 200
        assert status(f"{API}/data-models", f"Bearer {push_only}") == 403
        assert status(f"{API}/tables", f"Bearer {read_only}") == 200
        r = c.get(f"{NEW}/", headers={"Authorization": f"Bearer {read_only}"})
        assert r.status_code == 403
        assert "integration.data-pools:data_push" in r.json()


def test_expired_token_is_refused() -> None:
    with CelonisSimulatorServer(token_ttl=0.3) as srv, httpx.Client(base_url=srv.url) as c:
        r = c.post("/oauth2/token", data={"grant_type": "client_credentials"}, auth=CLIENT)
        assert r.json()["expires_in"] == 0
        header = {"Authorization": f"Bearer {r.json()['access_token']}"}
        assert c.get(f"{OLD}/", headers=header).status_code == 200
        time.sleep(0.4)
        assert c.get(f"{OLD}/", headers=header).status_code == 401


def test_unknown_pool_connection_and_column_type(api: Celonis) -> None:
    r = api.call("GET", "/integration/api/v1/data-push/no-such-pool/jobs/")
    assert (r.status_code, r.json()) == (404, "Data pool no-such-pool not found")
    r = api.call("POST", f"{OLD}/", json={"targetName": "t", "type": "DELTA", "connectionId": "nope"})
    assert r.status_code == 404
    assert "nope" in r.json()
    schema = {"tableName": "t", "columns": [{"columnName": "amount", "columnType": "DECIMAL"}]}
    r = api.call("POST", f"{OLD}/", json={"targetName": "t", "type": "REPLACE", "tableSchema": schema})
    assert r.status_code == 400
    assert r.json()["errorInformation"] == "amount: unsupported column type DECIMAL"
    assert api.call("POST", f"{OLD}/", json={"type": "REPLACE"}).status_code == 400


# ----------------------------------------------------------------------------- push jobs


def test_both_prefixes_and_trailing_slashes_reach_the_same_job(api: Celonis) -> None:
    job = api.create(NEW, targetName="t", type="REPLACE")
    assert job["status"] == "NEW"
    assert job["fileType"] == "PARQUET"
    assert job["dataPoolId"] == POOL
    for path in (f"{OLD}/{job['id']}", f"{OLD}/{job['id']}/", f"{NEW}/{job['id']}"):
        assert api.call("GET", path).json()["id"] == job["id"]
    assert [j["id"] for j in api.call("GET", OLD).json()] == [job["id"]]
    assert api.chunk(job["id"], parquet({"a": [1]}), prefix=NEW).status_code == 200
    chunks = api.call("GET", f"{OLD}/{job['id']}/chunks").json()
    assert [c["type"] for c in chunks] == ["UPSERT"]
    assert api.call("DELETE", f"{NEW}/{job['id']}").status_code == 204
    assert api.call("GET", f"{OLD}/{job['id']}").status_code == 404


def test_replace_then_delta_upsert_and_delete_chunk(api: Celonis, srv: CelonisSimulatorServer) -> None:
    table = "Orders $&.ü"
    first = api.push(
        [parquet({"id": [1, 2, 3], "status": ["new", "new", "new"]})], targetName=table, type="REPLACE"
    )
    assert first["status"] == "DONE", first["logs"]
    delta = api.push(
        [parquet({"id": [2, 4, 4], "status": ["paid", "new", "shipped"], "note": ["x", None, "y"]})],
        [parquet({"id": [1]})],
        prefix=NEW,
        targetName=table,
        type="DELTA",
        keys=["id"],
    )
    assert delta["status"] == "DONE", delta["logs"]
    rows = sorted(srv.pool_rows(table), key=lambda row: row["id"])
    assert rows == [
        {"id": 2, "status": "paid", "note": "x"},
        {"id": 3, "status": "new", "note": None},
        {"id": 4, "status": "shipped", "note": "y"},  # the last row for a key wins
    ]
    assert srv.pool_counts() == {table: 3}
    assert [(e[1], e[2], e[3]) for e in srv.executions] == [
        (table, "REPLACE", "DONE"),
        (table, "DELTA", "DONE"),
    ]
    deleted = api.push([], [parquet({"id": [3, 99]})], targetName=table, type="DELTA", keys=["id"])
    assert deleted["status"] == "DONE", deleted["logs"]
    assert sorted(r["id"] for r in srv.pool_rows(table)) == [2, 4]
    appended = api.push([parquet({"id": [3], "status": ["dup"]})], targetName=table, type="DELTA")
    assert appended["status"] == "DONE"
    assert srv.pool_counts()[table] == 3  # without keys a DELTA appends


def test_undeclared_strings_are_cut_at_80_declared_length_kept(
    api: Celonis, srv: CelonisSimulatorServer
) -> None:
    long_text = "é" * 150
    schema = {
        "tableName": "declared",
        "columns": [{"columnName": "text", "columnType": "STRING", "fieldLength": 150}],
    }
    api.push([parquet({"text": [long_text]})], targetName="undeclared", type="REPLACE")
    api.push([parquet({"text": [long_text]})], targetName="declared", type="REPLACE", tableSchema=schema)
    assert srv.pool_rows("undeclared") == [{"text": "é" * 80}]
    assert srv.pool_rows("declared") == [{"text": long_text}]
    assert srv.pool_columns("undeclared")[0] == ("text", "STRING", 80)
    assert srv.pool_columns("declared")[0] == ("text", "STRING", 150)
    columns = api.call("GET", f"{API}/columns", params={"tableName": "declared"}).json()
    assert columns[0] == {"name": "text", "length": 600, "type": "STRING"}
    tables = {t["name"]: t for t in api.call("GET", f"{API}/tables").json()}
    assert tables["undeclared"]["columns"][0]["length"] == 320
    assert [c["name"] for c in tables["declared"]["columns"]] == ["text", "_CELONIS_CHANGE_DATE"]


def test_later_delta_adds_columns_and_widens_strings(api: Celonis, srv: CelonisSimulatorServer) -> None:
    api.push([parquet({"id": [1], "name": ["a" * 100]})], targetName="t", type="REPLACE", keys=["id"])
    schema = {
        "tableName": "t",
        "columns": [{"columnName": "name", "columnType": "STRING", "fieldLength": 200}],
    }
    job = api.push(
        [parquet({"id": [2], "name": ["b" * 100], "amount": [1.5]})],
        targetName="t",
        type="DELTA",
        keys=["id"],
        tableSchema=schema,
    )
    assert job["status"] == "DONE", job["logs"]
    assert srv.pool_columns("t") == [
        ("id", "INTEGER", None),
        ("name", "STRING", 200),
        ("amount", "FLOAT", None),
    ]
    rows = {r["id"]: r for r in srv.pool_rows("t")}
    assert rows[1] == {"id": 1, "name": "a" * 80, "amount": None}
    assert rows[2] == {"id": 2, "name": "b" * 100, "amount": 1.5}


def test_connection_schema_is_separate_from_global(api: Celonis, srv: CelonisSimulatorServer) -> None:
    api.push([parquet({"a": [1, 2]})], targetName="t", type="REPLACE", connectionId=CONNECTION)
    assert srv.pool_counts(CONNECTION) == {"t": 2}
    assert srv.pool_counts() == {}
    tables = api.call("GET", f"{API}/tables").json()
    assert [(t["name"], t["dataSourceId"]) for t in tables] == [("t", CONNECTION)]
    assert [s["id"] for s in api.call("GET", f"{API}/data-sources/").json()] == [CONNECTION]


@pytest.mark.parametrize(
    ("chunk", "message"),
    [
        ({"id": [9], "amount": pa.array([Decimal("1.20")])}, "Column amount: DECIMAL is not supported"),
        ({"id": [9], "qty": ["many"]}, "column qty"),
        ({"other": [1]}, "key column id is missing"),
    ],
)
def test_failing_job_leaves_the_pool_unchanged(
    api: Celonis, srv: CelonisSimulatorServer, chunk: dict[str, Any], message: str
) -> None:
    api.push([parquet({"id": [1], "qty": [3]})], targetName="t", type="REPLACE")
    failed = api.push([parquet({"id": [2]}), parquet(chunk)], targetName="t", type="DELTA", keys=["id"])
    assert failed["status"] == "ERROR"
    assert any(message in line for line in failed["logs"]), failed["logs"]
    assert srv.pool_rows("t") == [{"id": 1, "qty": 3}]
    assert srv.executions[-1][3] == "ERROR"


def test_unreadable_parquet_is_an_error(api: Celonis) -> None:
    failed = api.push([b"not parquet"], targetName="t", type="REPLACE")
    assert failed["status"] == "ERROR"
    assert failed["logs"] == ["Internal error while validating the Parquet file"]


def test_re_execute_is_409_and_oversized_chunk_is_413() -> None:
    with CelonisSimulatorServer(job_delay=0.01, max_chunk_bytes=2000) as srv:
        api = Celonis(srv)
        job = api.push([parquet({"a": [1]})], targetName="t", type="REPLACE")
        r = api.call("POST", f"{OLD}/{job['id']}")
        assert r.status_code == 409
        fresh = api.create(targetName="t", type="REPLACE")
        assert api.chunk(fresh["id"], b"x" * 2001).status_code == 413
        assert api.chunk(fresh["id"], b"x" * 2000).status_code == 200


def test_hourly_limit_answers_429_with_retry_after() -> None:
    with CelonisSimulatorServer(job_delay=0.0, jobs_per_hour=2) as srv:
        api = Celonis(srv)
        jobs = [api.create(targetName="t", type="DELTA")["id"] for _ in range(3)]
        assert [api.call("POST", f"{OLD}/{j}").status_code for j in jobs] == [200, 200, 429]
        r = api.call("POST", f"{OLD}/{jobs[2]}")
        assert r.status_code == 429
        assert 1 <= int(r.headers["Retry-After"]) <= 3600
        assert isinstance(r.json(), str)
        assert api.call("GET", f"{OLD}/{jobs[2]}").json()["status"] == "NEW"
        assert httpx.post(f"{srv.url}/_admin/reset-hour").status_code == 200
        assert api.call("POST", f"{OLD}/{jobs[2]}").status_code == 200


# ----------------------------------------------------------------------------- faults


def test_fault_switches_429_5xx_and_failing_jobs(api: Celonis, srv: CelonisSimulatorServer) -> None:
    srv.faults.status_429 = 1
    r = httpx.post(f"{srv.url}/_admin/faults", json={"status_5xx": 1})
    assert r.json()["status_5xx"] == 1
    first = api.call("GET", f"{OLD}/")
    assert (first.status_code, first.headers["Retry-After"]) == (429, "1")
    assert api.call("GET", f"{OLD}/").status_code == 503
    assert api.call("GET", f"{OLD}/").status_code == 200
    api.push([parquet({"a": [1]})], targetName="t", type="REPLACE")
    httpx.post(f"{srv.url}/_admin/faults", json={"fail_jobs": 1})
    failed = api.push([parquet({"a": [2, 3]})], targetName="t", type="REPLACE")
    assert (failed["status"], failed["logs"]) == ("ERROR", ["Simulated failure"])
    assert srv.pool_rows("t") == [{"a": 1}]
    assert api.push([parquet({"a": [4]})], targetName="t", type="REPLACE")["status"] == "DONE"
    assert httpx.post(f"{srv.url}/_admin/faults", json={"bogus": 1}).status_code == 400


def test_revoked_tokens_must_be_renewed(api: Celonis, srv: CelonisSimulatorServer) -> None:
    assert api.call("GET", f"{OLD}/").status_code == 200
    srv.faults.revoke_tokens()
    assert api.call("GET", f"{OLD}/").status_code == 401
    api.token = get_token(api.http)
    assert api.call("GET", f"{OLD}/").status_code == 200
    httpx.post(f"{srv.url}/_admin/faults", json={"revoke_tokens": True})
    assert api.call("GET", f"{OLD}/").status_code == 401
    assert (
        api.http.get(f"{OLD}/", headers={"Authorization": "AppKey celonis-demo-app-key"}).status_code == 200
    )
    assert isinstance(srv.faults, CelonisFaults)
    assert httpx.get(f"{srv.url}/_admin/faults").json()["revocations"] == 2


# ----------------------------------------------------------------------------- data models


def _model_with_tables(api: Celonis) -> tuple[str, dict[str, str]]:
    dm = api.call("POST", f"{API}/data-models", json={"name": "OE"}).json()["id"]
    body = [
        {"name": "cases", "alias": "Cases", "dataSourceId": None},
        {"name": "events", "alias": None, "dataSourceId": None},
    ]
    added = api.call("POST", f"{API}/data-model/{dm}/tables", json=body).json()
    return dm, {t["aliasOrName"]: t["id"] for t in added}


def test_data_model_foreign_key_and_partial_load(api: Celonis, srv: CelonisSimulatorServer) -> None:
    api.push([parquet({"case_id": ["a", "b"]})], targetName="cases", type="REPLACE")
    api.push(
        [parquet({"case_id": ["a", "a", "b"], "activity": ["x", "y", "z"]})],
        targetName="events",
        type="REPLACE",
    )
    dm, ids = _model_with_tables(api)
    fk = {
        "sourceTableId": ids["Cases"],
        "targetTableId": ids["events"],
        "columns": [{"sourceColumnName": "case_id", "targetColumnName": "case_id"}],
    }
    assert api.call("POST", f"{API}/data-models/{dm}/foreign-keys", json=fk).status_code == 200
    bad_fk = {**fk, "targetTableId": "nope"}
    assert api.call("POST", f"{API}/data-models/{dm}/foreign-keys", json=bad_fk).status_code == 400
    config = {
        "activityTableId": ids["events"],
        "caseTableId": ids["Cases"],
        "caseIdColumn": "case_id",
        "activityColumn": "activity",
        "timestampColumn": None,
        "sortingColumn": None,
    }
    put = api.call("PUT", f"{API}/data-models/{dm}", json={"name": "OE", "processConfigurations": [config]})
    assert put.json()["processConfigurations"][0]["activityColumn"] == "activity"
    assert api.call("POST", f"{API}/data-models/{dm}/reload").status_code == 200
    info = api.load_info(dm)
    assert info["loadInfo"]["currentComputeLoad"]["loadStatus"] == "SUCCESS"
    counts = {t["tableName"]: t["tableRowCount"] for t in info["loadInfo"]["liveDataModel"]["tableLoads"]}
    assert counts == {"Cases": 2, "events": 3}
    api.push([parquet({"case_id": ["c"]})], targetName="cases", type="DELTA")
    api.push([parquet({"case_id": ["c"], "activity": ["w"]})], targetName="events", type="DELTA")
    r = api.call("POST", f"{V1}/data-models/{dm}/load/partial-sync", json=[ids["Cases"]])
    assert r.status_code == 200
    info = api.load_info(dm)
    assert info["loadInfo"]["currentComputeLoad"]["loadType"] == "PARTIAL"
    counts = {t["tableName"]: t["tableRowCount"] for t in info["loadInfo"]["liveDataModel"]["tableLoads"]}
    assert counts == {"Cases": 3, "events": 3}  # events came from the cache
    listed = api.call("GET", f"{V1}/data-models/{dm}/tables").json()
    assert sorted(t["id"] for t in listed) == sorted(ids.values())


def test_load_errors_name_the_problem(api: Celonis, srv: CelonisSimulatorServer) -> None:
    api.push([parquet({"case_id": ["a"]})], targetName="cases", type="REPLACE")
    dm, ids = _model_with_tables(api)  # "events" is not in the pool
    api.call("POST", f"{V1}/data-models/{dm}/load")
    current = api.load_info(dm)["loadInfo"]["currentComputeLoad"]
    assert current["loadStatus"] == "ERROR"
    assert "Table events does not exist in the data pool" in current["message"]
    api.push([parquet({"case_id": ["a"]})], targetName="events", type="REPLACE")
    fk = {
        "sourceTableId": ids["Cases"],
        "targetTableId": ids["events"],
        "columns": [{"sourceColumnName": "case_id", "targetColumnName": "case_key"}],
    }
    api.call("POST", f"{API}/data-models/{dm}/foreign-keys", json=fk)
    api.call("POST", f"{V1}/data-models/{dm}/load")
    assert (
        "column case_key does not exist in table events"
        in api.load_info(dm)["loadInfo"]["currentComputeLoad"]["message"]
    )
    for fk_row in api.call("GET", f"{API}/data-models/{dm}/foreign-keys").json():
        assert api.call("DELETE", f"{API}/data-models/{dm}/foreign-keys/{fk_row['id']}").status_code == 204
    srv.faults.load_error = True
    api.call("POST", f"{V1}/data-models/{dm}/load")
    assert api.load_info(dm)["loadInfo"]["currentComputeLoad"]["loadStatus"] == "ERROR"
    srv.faults.load_error = False
    api.call("POST", f"{V1}/data-models/{dm}/load")
    assert api.load_info(dm)["loadInfo"]["currentComputeLoad"]["loadStatus"] == "SUCCESS"


def test_duplicate_primary_key_fails_the_load(api: Celonis) -> None:
    api.push([parquet({"id": [1, 1]})], targetName="t", type="REPLACE")
    dm = api.call("POST", f"{API}/data-models", json={"name": "m"}).json()["id"]
    api.call("POST", f"{API}/data-model/{dm}/tables", json=[{"name": "t", "primaryKeys": ["id"]}])
    api.call("POST", f"{API}/data-models/{dm}/reload")
    current = api.load_info(dm)["loadInfo"]["currentComputeLoad"]
    assert current["loadStatus"] == "ERROR"
    assert "primary key (id) has 1 duplicate values" in current["message"]


# ----------------------------------------------------------------------------- the pool file


def test_pool_file_is_readable_by_duckdb_after_stop(tmp_path: Path) -> None:
    pool_db = tmp_path / "pool.duckdb"
    with CelonisSimulatorServer(pool_db=pool_db, job_delay=0.01) as srv:
        api = Celonis(srv)
        job = api.push([parquet({"id": [1, 2], "name": ["a", "b"]})], targetName="t.x", type="REPLACE")
        assert job["status"] == "DONE"
        with duckdb.connect(str(pool_db), read_only=True) as con:  # the server idles: the file is free
            assert con.execute('SELECT count(*) FROM main."t.x"').fetchone() == (2,)
        assert httpx.get(f"{srv.url}/_admin/pool").json()["tables"] == {"t.x": 2}
    assert not (tmp_path / "pool.duckdb.chunks").exists()
    with duckdb.connect(str(pool_db), read_only=True) as con:
        rows = con.execute(
            'SELECT id, name, "_CELONIS_CHANGE_DATE" IS NOT NULL FROM main."t.x" ORDER BY id'
        ).fetchall()
    assert rows == [(1, "a", True), (2, "b", True)]
    with CelonisSimulatorServer(pool_db=pool_db) as again:  # the pool outlives the server
        assert again.pool_counts() == {"t.x": 2}


def test_cli_registers_the_command() -> None:
    from oe_assets.cli import build_parser

    args = build_parser().parse_args(["celonis-simulator", "--port", "0", "--faults", '{"fail_jobs": 2}'])
    assert args.port == 0
    assert args.pool_db == ".oe_celonis_pool.duckdb"
    assert args.faults.fail_jobs == 2
    assert args.func.__name__ == "cmd_celonis_simulator"
