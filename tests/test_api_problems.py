"""Bad input to the API gets RFC 9457 problem details naming what was wrong: never a 500,
never a traceback, and nothing of it reaches SQL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import psycopg2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_helpers import Service, running

PROBLEM = "application/problem+json"


def _shop(dsn: str) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    conn.cursor().execute(
        "CREATE TABLE orders (id int PRIMARY KEY, status text, amount numeric(10,2), "
        "placed timestamptz DEFAULT now());"
        "INSERT INTO orders VALUES (1, 'new', 10.50), (2, 'paid', 99.99)"
    )
    conn.close()


def _assert_problem(svc: Service, path: str, params: dict[str, object], *names: str) -> None:
    r = svc.get(path, **params)
    assert r.status_code in (400, 404, 422), (path, params, r.status_code, r.text)
    assert r.headers["content-type"] == PROBLEM
    doc = r.json()
    assert doc["status"] == r.status_code and doc["detail"] and "Traceback" not in r.text
    if r.status_code == 400 and names:
        assert {p["name"] for p in doc["invalid-params"]} & set(names), doc


def test_bad_parameters_get_problem_details(pg_dsn: str, tmp_path: Path) -> None:
    _shop(pg_dsn)
    with running(tmp_path / "store", "--source", pg_dsn) as svc:
        cases: list[tuple[str, dict[str, object], tuple[str, ...]]] = [
            ("/api/v1/tables/orders/asof", {}, ("at",)),
            ("/api/v1/tables/orders/asof", {"at": "yesterday-ish"}, ("at",)),
            ("/api/v1/tables/orders/asof", {"at": "now", "filter": "nope:eq:1"}, ("filter",)),
            ("/api/v1/tables/orders/asof", {"at": "now", "filter": "id:gt:abc"}, ("filter",)),
            ("/api/v1/tables/orders/asof", {"at": "now", "filter": "id:sql:1"}, ("filter",)),
            ("/api/v1/tables/orders/asof", {"at": "now", "format": "xml"}, ("format",)),
            ("/api/v1/tables/nosuch/asof", {"at": "now"}, ()),
            ("/api/v1/tables/orders/history", {}, ("key",)),
            ("/api/v1/tables/orders/history", {"key": "x"}, ("key",)),
            ("/api/v1/tables/orders/history", {"key": ["1", "2"]}, ("key",)),
            ("/api/v1/changes", {"since": "tx:abc"}, ("since",)),
            ("/api/v1/changes", {"txid": "-4"}, ("txid",)),
            ("/api/v1/tx/99999999", {}, ()),
            ("/api/v1/tx/abc", {}, ("txid",)),
            ("/api/v1/tx/0%2F", {}, ()),  # decodes to a trailing slash: not a redirect
        ]
        for path, params, names in cases:
            _assert_problem(svc, path, params, *names)
        # a value shaped like SQL is a value, bound as a parameter: it matches nothing
        injected = svc.rows("/api/v1/tables/orders/asof", at="now", filter="status:eq:x' OR '1'='1")
        assert injected == []
        assert len(svc.rows("/api/v1/tables/orders/asof", at="now")) == 2

        @settings(
            max_examples=150,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture],
        )
        @given(
            route=st.sampled_from(["asof", "history", "changes", "tx"]),
            text=st.text(min_size=0, max_size=40),
            column=st.sampled_from(["id", "status", "amount", "placed", "nope"]),
            op=st.sampled_from(["eq", "lt", "in", "like", "isnull", "bogus"]),
        )
        def no_500(route: str, text: str, column: str, op: str) -> None:
            if route == "asof":
                r = svc.get("/api/v1/tables/orders/asof", at="now", filter=f"{column}:{op}:{text}")
                r2 = svc.get("/api/v1/tables/orders/asof", at=text)
            elif route == "history":
                r = svc.get("/api/v1/tables/orders/history", key=text)
                r2 = svc.get(f"/api/v1/tables/{quote(text, safe='') or 'x'}/history", key="1")
            elif route == "changes":
                r = svc.get("/api/v1/changes", since=text)
                r2 = svc.get("/api/v1/changes", table=text or "x")
            else:
                r = svc.get(f"/api/v1/tx/{quote(text, safe='') or 'x'}")
                r2 = svc.get("/api/v1/tx/1", source=text)
            for resp in (r, r2):
                assert resp.status_code in (200, 400, 404, 422), resp.text
                if resp.status_code != 200:
                    assert resp.headers["content-type"] == PROBLEM, resp.text
                    assert resp.json()["detail"]

        no_500()
