"""The reads `ls`, `status` and the console's deployments table make, in plain SQL over a DB-API connection. One
text for both stores and both callers: the engine runs it on peewee's connection (storage/queries.py), the CLI's quick
path (console/quick.py) on a standard-library sqlite3 connection, so that `ls` and `status` answer without importing
peewee. Standard library only. One query per table: no per-row lookups in loops."""
import json

# the columns a deployment row has, as `ls --json`, `show` and the console read them
DEPLOYMENT_COLUMNS = ("id", "status", "phase", "host", "error", "created_at", "updated_at", "finished_at",
                      "started_at", "attempts", "heartbeat_at", "wait_reason")
# what a filter word may name (`status:fail`); a bare word matches any of them
MATCH_COLUMNS = {"id": "d.id", "service": "s.name", "status": "d.status", "host": "d.host", "error": "d.error"}
CHUNK = 500   # ids per IN (...): well under every SQLite build's limit of bound parameters


class Reader:
    """Runs the reads on one connection. `execute(sql, params)` returns a DB-API cursor; `param` is the driver's
    placeholder (`?` for sqlite3, `%s` for psycopg2); `like` its case-insensitive LIKE (SQLite's LIKE is one)."""

    def __init__(self, execute, param: str = "?", like: str = "LIKE"):
        self.execute = execute
        self.param = param
        self.like = like

    @classmethod
    def sqlite(cls, connection) -> "Reader":
        return cls(connection.execute)

    @classmethod
    def peewee(cls, database) -> "Reader":
        """On the store peewee has open (its retries on a dropped PostgreSQL connection included)."""
        server = not database.__class__.__name__.startswith("Sqlite")
        return cls(database.execute_sql, database.param, "ILIKE" if server else "LIKE")

    def _cursor(self, sql: str, params=()):
        return self.execute(sql.replace("?", self.param), tuple(params))

    def _dicts(self, sql: str, params=()) -> list[dict]:
        cursor = self._cursor(sql, params)
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def _scalar(self, sql: str, params=()):
        row = self._cursor(sql, params).fetchone()
        return row[0] if row else None

    def _match(self, words) -> tuple[list[str], list]:
        """Each word (case-insensitive substring, `field:value` for one field) must match id, service, status, host or
        error. The LIKE is a superset (`_` and `%` are wildcards there): callers that care re-check in Python."""
        where, params = [], []
        for word in words or ():
            field, sep, value = word.partition(":")
            columns = [MATCH_COLUMNS[field]] if sep and field in MATCH_COLUMNS else list(MATCH_COLUMNS.values())
            value = value if sep and field in MATCH_COLUMNS else word
            where.append("(" + " OR ".join(f"{c} {self.like} ?" for c in columns) + ")")
            params += [f"%{value}%"] * len(columns)
        return where, params

    # ---- deployments
    def deployment_rows(self, status=None, service=None, host=None, limit=None, match=None, ids=None) -> list[dict]:
        """Deployments newest first with their service's name and their latest cleanup state, in two queries."""
        where, params = self._match(match)
        if ids is not None:
            ids = list(ids)
            if not ids:
                return []
            where.append(f"d.id IN ({', '.join('?' * len(ids))})")
            params += ids
        for column, value in (("d.status", status), ("s.name", service), ("d.host", host)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        sql = (f"SELECT {', '.join('d.' + c for c in DEPLOYMENT_COLUMNS)}, s.name AS service "
               "FROM deployment d JOIN service s ON s.id = d.service_id"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY d.created_at DESC, d.id")
        if limit:
            sql += " LIMIT ?"
            params.append(int(limit))
        rows = self._dicts(sql, params)
        if rows:
            # by id (in chunks) for a window of the store; every task only for a read of most rows
            states = self.cleanup_states([r["id"] for r in rows] if len(rows) <= 10 * CHUNK else None)
            for r in rows:
                r["cleanup"] = states.get(r["id"])
        return rows

    def cleanup_states(self, ids=None) -> dict[str, str]:
        """{deployment id: state of its latest cleanup task}, for these deployments or every one."""
        sql = "SELECT deployment_id, state FROM cleanup_task{} ORDER BY id"
        if ids is None:
            return dict(self._cursor(sql.format("")).fetchall())
        ids, out = list(ids), {}
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            out.update(self._cursor(sql.format(f" WHERE deployment_id IN ({', '.join('?' * len(chunk))})"), chunk))
        return out

    def count_deployments(self, match=None) -> int:
        if not match:   # no join: SQLite counts the smallest index of the one table
            return self._scalar("SELECT COUNT(*) FROM deployment")
        where, params = self._match(match)
        return self._scalar("SELECT COUNT(*) FROM deployment d JOIN service s ON s.id = d.service_id WHERE "
                            + " AND ".join(where), params)

    # ---- the engine's status
    def lease(self, name: str) -> dict | None:
        rows = self._dicts("SELECT holder, holder_machine, holder_pid, acquired_at, renewed_at, expires_at "
                           "FROM lease WHERE name = ?", (name,))
        return rows[0] if rows else None

    def latest_job_runs(self) -> dict[str, dict]:
        """{job: its newest JobRun}, its counts decoded."""
        rows = self._dicts("SELECT id, job, holder, started_at, finished_at, outcome, counts, error FROM job_run "
                           "WHERE id IN (SELECT MAX(id) FROM job_run GROUP BY job)")
        for r in rows:
            r["counts"] = None if r["counts"] is None else json.loads(r["counts"])
        return {r["job"]: r for r in rows}

    def last_finished(self, job: str) -> float | None:
        """When the job's newest finished run finished."""
        return self._scalar("SELECT finished_at FROM job_run WHERE job = ? AND finished_at IS NOT NULL "
                            "ORDER BY id DESC LIMIT 1", (job,))

    def count_tasks(self, states) -> int:
        states = sorted(states)
        return self._scalar(f"SELECT COUNT(*) FROM cleanup_task WHERE state IN ({', '.join('?' * len(states))})",
                            states)

    def host_rows(self) -> list[dict]:
        """The Host rows (`host add`): where each is and its last noted reachability."""
        rows = self._dicts("SELECT name, url, is_default, tls_ca, tls_cert, tls_key, address, reachable, last_error, "
                           "last_seen_at FROM host ORDER BY name")
        for r in rows:   # SQLite keeps booleans as 0/1
            r["is_default"] = bool(r["is_default"])
            r["reachable"] = None if r["reachable"] is None else bool(r["reachable"])
        return rows
