"""Durable journal of Label Studio's index events, the thread that applies it, and the catch-up.

Label Studio waits 1 s for a webhook's answer and never sends it again. So ``/webhook`` only
appends the event here (SQLite at ``MODEL_DIR/identify/journal.db``, committed with WAL and
``synchronous=FULL`` before the 2xx answer) and a background thread in each backend process
applies the entries to the index (``fit.fit``). A process killed after the answer leaves its entry
here; the next process applies it.

Several gunicorn workers share one journal: an entry is claimed inside a write transaction (one
claimer wins), a project's entries are applied one at a time in arrival order, and a claim whose
owner died (its pid is gone on this host, or its heartbeat is older than the lease) is taken over.
Applying an entry twice changes nothing, and a late entry cannot undo a later one: an upsert
identical to what the index applied, of an older version, or of a deleted annotation writes nothing,
nor does a repeated delete (``ledger``: deletes leave tombstones in the index). An entry that keeps
killing its applier is given up after ``MAX_ATTEMPTS`` claims.

Catch-up: for each project the process serves, Label Studio's annotations (ids + ``updated_at``)
are compared with what the index has applied (``ledger.applied``). Annotations the backend never heard
of, or whose newer version it missed, are journalled as ANNOTATION_UPDATED (with the task, so no
second request is needed); annotations deleted in Label Studio while the backend was away, as one
ANNOTATIONS_DELETED; more than ``CATCHUP_REBUILD_ABOVE`` to embed (identify just turned on on a
labelled project, say) becomes one START_TRAINING. It runs when a process first sees a project
(so after every restart, unless another worker checked a minute ago) and every
``IDENTIFY_CATCHUP_INTERVAL`` seconds, never while the project still has entries to apply.

Not here: what an event does to the index (``fit.py``), which project a request is for (the models)."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

from pipeline.process_cache import ProcessCache
from pipeline.references import ledger
from pipeline.settings import Identify
from pipeline.sqlite import Connections, immediate

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
KEEP_DONE = 10_000  # applied entries kept for /metrics and post-mortems
DEFAULT_LEASE = 120.0  # seconds without a heartbeat after which a claim is taken over
CATCHUP_MIN_GAP = 60.0  # a project seen again by another process is not re-checked sooner than this
CATCHUP_REBUILD_ABOVE = 200  # more annotations to (re-)embed than this: one START_TRAINING instead

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    data_key TEXT,
    source TEXT NOT NULL,
    received REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',  -- pending | applying | done
    owner TEXT,
    heartbeat REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    applied REAL,
    status TEXT,  -- fit's status: ok | partial | ignored | error
    result TEXT
);
CREATE INDEX IF NOT EXISTS entries_open ON entries (state, project, id);
CREATE TABLE IF NOT EXISTS projects (
    project TEXT PRIMARY KEY,
    data_key TEXT,
    requested REAL,
    checked REAL,
    checker TEXT,
    checker_since REAL,
    report TEXT
);
"""

_owners: ProcessCache = ProcessCache("journal owner")  # pid -> this process's name in claims


def process_owner() -> str:
    """This process as it names itself in claims: host:pid:nonce (computed again after a fork)."""
    pid = os.getpid()
    return _owners.get(pid, lambda: f"{socket.gethostname()}:{pid}:{secrets.token_hex(4)}")


@dataclass
class Entry:
    id: int
    project: str
    event: str
    data: dict
    data_key: Optional[str]
    source: str
    attempts: int
    received: float


def _owner_alive(name: Optional[str]) -> bool:
    """False only when the claim's owner surely died: a process on this host whose pid is gone, or this very
    pid with another nonce (a restarted container reuses pids)."""
    try:
        host, pid, _nonce = (name or "").rsplit(":", 2)
        pid = int(pid)
    except ValueError:
        return False
    if host != socket.gethostname():
        return True  # another host: only the lease tells
    if pid == os.getpid():
        return name == process_owner()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Journal:
    """The SQLite journal file; thread-safe (a connection per thread), shared by processes."""

    def __init__(self, path: Union[str, Path], lease: float = DEFAULT_LEASE):
        self.path = Path(path)
        self.lease = lease
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # a committed entry survives a crash of the machine too
        self._db = Connections(self.path, synchronous="FULL", row_factory=sqlite3.Row)
        self._db().executescript(SCHEMA)

    def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE: one writer at a time across processes)."""
        return immediate(self._db())

    # -- entries ------------------------------------------------------------------------------
    def append(self, project: str, event: str, data: dict, data_key: Optional[str] = None,
               source: str = "webhook") -> int:
        """Store an event; when this returns, it is on disk."""
        with self._tx() as db:
            cur = db.execute("INSERT INTO entries (project, event, payload, data_key, source, received) "
                             "VALUES (?, ?, ?, ?, ?, ?)",
                             (str(project), event, json.dumps(data, default=str), data_key, source, time.time()))
            return int(cur.lastrowid)

    def claim(self) -> Optional[Entry]:
        """The oldest entry that may be applied now (its project's first open entry, not held by a
        live applier), marked as ours; None when there is none."""
        now = time.time()
        with self._tx() as db:
            heads = db.execute(
                "SELECT * FROM entries WHERE id IN (SELECT MIN(id) FROM entries "
                "WHERE state IN ('pending', 'applying') GROUP BY project) ORDER BY id").fetchall()
            for row in heads:
                if row["state"] == "applying":
                    if _owner_alive(row["owner"]) and now - (row["heartbeat"] or 0) < self.lease:
                        continue
                    log.warning("journal entry %s (%s, project %s): its applier %s died; applying it again",
                                row["id"], row["event"], row["project"], row["owner"])
                if row["attempts"] >= MAX_ATTEMPTS:
                    reason = f"given up after {row['attempts']} attempts (each ended its process or raised)"
                    db.execute("UPDATE entries SET state='done', status='error', applied=?, result=? WHERE id=?",
                               (now, json.dumps({"status": "error", "reason": reason}), row["id"]))
                    log.error("journal entry %s (%s, project %s): %s", row["id"], row["event"], row["project"],
                              reason)
                    continue
                db.execute("UPDATE entries SET state='applying', owner=?, heartbeat=?, attempts=attempts+1 "
                           "WHERE id=?", (process_owner(), now, row["id"]))
                return Entry(row["id"], row["project"], row["event"], json.loads(row["payload"]), row["data_key"],
                             row["source"], row["attempts"] + 1, row["received"])
        return None

    def beat(self, entry_id: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE entries SET heartbeat=? WHERE id=? AND owner=? AND state='applying'",
                       (time.time(), entry_id, process_owner()))

    def finish(self, entry_id: int, result: dict) -> None:
        with self._tx() as db:
            db.execute("UPDATE entries SET state='done', status=?, result=?, applied=? "
                       "WHERE id=? AND owner=? AND state='applying'",
                       (str(result.get("status")), json.dumps(result, default=str), time.time(), entry_id,
                        process_owner()))
            db.execute("DELETE FROM entries WHERE state='done' AND id < "
                       "(SELECT MAX(id) FROM entries WHERE state='done') - ?", (KEEP_DONE,))

    def release(self, entry_id: int) -> None:
        """Give a claimed entry back (its application raised): applied again later, up to MAX_ATTEMPTS."""
        with self._tx() as db:
            db.execute("UPDATE entries SET state='pending', owner=NULL WHERE id=? AND owner=? AND state='applying'",
                       (entry_id, process_owner()))

    def get(self, entry_id: int) -> Optional[dict]:
        row = self._db().execute("SELECT * FROM entries WHERE id=?", (entry_id,)).fetchone()
        if row is None:
            return None
        out = {k: row[k] for k in ("id", "project", "event", "source", "state", "attempts", "received", "applied",
                                   "status")}
        out["result"] = json.loads(row["result"]) if row["result"] else None
        return out

    def wait(self, entry_id: int, timeout: float = 60.0) -> Optional[dict]:
        """The entry once applied (None if it is not within ``timeout``): for tests and tools."""
        stop = time.monotonic() + timeout
        while True:
            row = self.get(entry_id)
            if row is not None and row["state"] == "done":
                return row
            if time.monotonic() > stop:
                return None
            time.sleep(0.05)

    def open_entries(self, project: Optional[str] = None) -> int:
        sql = "SELECT COUNT(*) FROM entries WHERE state IN ('pending', 'applying')"
        args: tuple = ()
        if project is not None:
            sql, args = sql + " AND project=?", (str(project),)
        return int(self._db().execute(sql, args).fetchone()[0])

    # -- projects and their catch-up ------------------------------------------------------------
    def watch(self, project: str, data_key: Optional[str]) -> None:
        """Remember a served project (its image key) and ask for a catch-up soon."""
        with self._tx() as db:
            db.execute("INSERT INTO projects (project, data_key, requested) VALUES (?, ?, ?) "
                       "ON CONFLICT (project) DO UPDATE SET data_key=COALESCE(excluded.data_key, data_key), "
                       "requested=excluded.requested", (str(project), data_key, time.time()))

    def request_checks(self) -> None:
        """Ask for a catch-up of every known project (a process starting: what did it miss while down?)."""
        with self._tx() as db:
            db.execute("UPDATE projects SET requested=?", (time.time(),))

    def claim_check(self, interval: float) -> Optional[tuple[str, Optional[str]]]:
        """A project due for a catch-up (project, data_key), marked as being checked by us."""
        now = time.time()
        with self._tx() as db:
            rows = db.execute(
                "SELECT * FROM projects p WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.project = p.project "
                "AND e.state IN ('pending', 'applying')) ORDER BY COALESCE(checked, 0)").fetchall()
            for row in rows:
                checked = row["checked"] or 0.0
                due = (not row["checked"] or now - checked >= interval
                       or ((row["requested"] or 0) > checked and now - checked >= CATCHUP_MIN_GAP))
                busy = row["checker"] and _owner_alive(row["checker"]) and now - (row["checker_since"] or 0) < \
                    self.lease
                if due and not busy:
                    db.execute("UPDATE projects SET checker=?, checker_since=? WHERE project=?",
                               (process_owner(), now, row["project"]))
                    return row["project"], row["data_key"]
        return None

    def finish_check(self, project: str, report: dict) -> None:
        with self._tx() as db:
            db.execute("UPDATE projects SET checked=?, checker=NULL, report=? WHERE project=? AND checker=?",
                       (time.time(), json.dumps(report, default=str), str(project), process_owner()))

    # -- what /metrics shows ---------------------------------------------------------------------
    def stats(self) -> dict:
        db = self._db()
        now = time.time()
        counts = dict(db.execute("SELECT state, COUNT(*) FROM entries GROUP BY state").fetchall())
        oldest = db.execute("SELECT MIN(received) FROM entries WHERE state IN ('pending', 'applying')").fetchone()[0]
        last = db.execute("SELECT * FROM entries WHERE state='done' ORDER BY applied DESC LIMIT 1").fetchone()
        failed = db.execute("SELECT COUNT(*) FROM entries WHERE state='done' AND status='error'").fetchone()[0]
        out = {"path": str(self.path), "backlog": counts.get("pending", 0) + counts.get("applying", 0),
               "applying": counts.get("applying", 0),
               "oldest_pending_seconds": None if oldest is None else round(now - oldest, 3),
               "failed": failed, "last_applied": None, "projects": {}}
        if last is not None:
            out["last_applied"] = {"id": last["id"], "event": last["event"], "project": last["project"],
                                   "source": last["source"], "status": last["status"],
                                   "seconds_ago": round(now - last["applied"], 3),
                                   "lag_seconds": round(last["applied"] - last["received"], 3)}
        for row in db.execute("SELECT * FROM projects ORDER BY project").fetchall():
            report = json.loads(row["report"]) if row["report"] else None
            out["projects"][row["project"]] = {
                "backlog": self.open_entries(row["project"]),
                "last_check_seconds_ago": None if not row["checked"] else round(now - row["checked"], 3),
                "last_check": report}
        return out


class Applier(threading.Thread):
    """The per-process thread that applies journal entries and runs due catch-ups.

    ``apply(entry) -> result dict`` (fit's answer); ``check(project, data_key) -> report dict``."""

    def __init__(self, journal: Journal, apply: Callable[[Entry], dict],
                 check: Optional[Callable[[str, Optional[str]], dict]] = None,
                 interval: Optional[float] = None, poll: float = 0.5):
        super().__init__(name="identify-journal", daemon=True)
        self.journal, self._apply, self._check = journal, apply, check
        self.interval = catchup_interval() if interval is None else interval
        self.poll = poll
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._pause = 0.0  # after an entry raised: seconds before the next attempt

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._halt.set()
        self._wake.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                worked = self.step()
            except Exception:  # noqa: BLE001 - the thread must survive a bad database moment
                log.exception("identify journal: applying failed; retrying")
                worked = False
            if not worked or self._pause:
                self._wake.wait(self._pause or self.poll)
                self._wake.clear()
                self._pause = 0.0

    def step(self) -> bool:
        """Apply one entry, or else run one due catch-up; False when there was nothing to do."""
        entry = self.journal.claim()
        if entry is not None:
            self._run(entry)
            return True
        if self._check is None or self.interval <= 0:
            return False
        due = self.journal.claim_check(self.interval)
        if due is None:
            return False
        project, data_key = due
        try:
            report = self._check(project, data_key)
        except Exception as e:  # noqa: BLE001 - Label Studio down, ...: reported in /metrics, tried again later
            log.warning("identify catch-up for project %s failed: %s: %s", project, type(e).__name__, e)
            report = {"status": "error", "reason": f"{type(e).__name__}: {e}"}
        self.journal.finish_check(project, report)
        return True

    def _run(self, entry: Entry) -> None:
        beat_stop = threading.Event()

        def beat():
            while not beat_stop.wait(max(self.journal.lease / 4, 0.05)):
                with contextlib.suppress(sqlite3.Error):
                    self.journal.beat(entry.id)

        beater = threading.Thread(target=beat, name="identify-journal-heartbeat", daemon=True)
        beater.start()
        try:
            result = self._apply(entry)
        except Exception as e:  # noqa: BLE001 - fit answers errors itself; this is the unexpected kind
            result = None
            if entry.attempts >= MAX_ATTEMPTS:
                log.exception("journal entry %s (%s, project %s) raised %d times; given up", entry.id,
                              entry.event, entry.project, entry.attempts)
                result = {"status": "error", "reason": f"{type(e).__name__}: {e}", "attempts": entry.attempts}
            else:
                log.exception("journal entry %s (%s, project %s) raised; it will be applied again", entry.id,
                              entry.event, entry.project)
                self.journal.release(entry.id)
                self._pause = min(60.0, 2.0 ** entry.attempts)
        finally:
            beat_stop.set()
            beater.join()
        if result is not None:
            self.journal.finish(entry.id, result)


def catchup_interval() -> float:
    """IDENTIFY_CATCHUP_INTERVAL seconds between catch-ups of a project (0: only none at all)."""
    return Identify.read().catchup_interval


def compare(listing, snap, listed_at: int) -> dict:
    """Label Studio's annotations vs the index's: what to journal.

    ``listing``: (task, annotation) pairs from Label Studio, listed after the index was at version
    ``listed_at``; ``snap``: the index snapshot read after the listing. Annotation ids with vectors
    but no ``ledger.applied`` record (an index written before it existed) count as applied.
    Returns ``{"upsert": [(task, annotation)], "gone": [ids], ...counts}``."""
    known = {**{str(a): [None, 0] for a in snap.annotation_ids()}, **ledger.applied(snap)}
    tombs = ledger.tombstones(snap)
    upsert, in_ls, missing, outdated = [], set(), 0, 0
    for task, ann in listing:
        aid = str(ann.get("id"))
        in_ls.add(aid)
        if aid in tombs and tombs[aid].stands_against(ledger.Version.of(ann)):
            continue  # a delete reached the index: it stands (ledger.py)
        seen = known.get(aid)
        stamp = ledger.updated_at(ann)
        if seen is None:
            missing += 1
            upsert.append((task, ann))
        elif seen[0] is not None and stamp is not None and stamp > seen[0]:
            outdated += 1
            upsert.append((task, ann))
    # applied before the listing began yet absent from it: deleted while the backend was away
    gone = sorted((a for a, v in known.items() if a not in in_ls and (v[1] or 0) <= listed_at), key=str)
    return {"upsert": upsert, "gone": gone, "ls_annotations": len(in_ls), "not_in_index": missing,
            "outdated_in_index": outdated, "deleted_in_ls": len(gone)}
