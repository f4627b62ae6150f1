"""What the package adds around the SQL of a small call: ours against the raw driver.

    python -m bench.percall [--quick] [--backend sqlite|postgresql|both]
                            [--scales 200,20000] [--rounds 200] [--output FILE]

The control plane polls once per training step and the dashboard makes many small calls,
so the fixed cost of a call (session and transaction set-up, round trips, schema checks,
record building) matters as much as the SQL. For each backend and each scale (a database
of N runs with their objectives, bulk-loaded, then ANALYZE), three calls that find nothing
are timed in one process, alternating with the same question asked in hand-written SQL on
the raw driver (``sqlite3``; ``psycopg2`` in its own short transaction):

* ``get_run`` of a missing id;
* an empty ``query_runs`` (a filter that matches no run);
* ``query_runs_by_objectives`` on a known objective with a bound that no run meets (after
  the first empty answer the database knows the name exists, so it asks no more).

Both sides are first checked to give the same answer. The figure is the difference of the
medians, ours - raw, in ms; the targets are ≤ 0.3 ms on SQLite and ≤ 0.5 ms on PostgreSQL
at every scale. Then the faces: one operation called as a ``TrainingDB`` method, as the
module-level function, as its store function inside ``db.read``/``db.write`` and (a write)
as its ``safe`` twin. Nothing here is asserted: ``tests/test_per_call.py`` pins the
structural facts (statement counts), never a time.

The PostgreSQL admin URL comes from TRAINING_DB_BENCH_POSTGRES_URL (default: the local
server); databases are created and dropped.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import training_db
from bench import databases, queries
from bench.databases import Backend
from bench.measure import time_alternating
from bench.workload import make_run
from training_db import TrainingDB, safe
from training_db.store import objectives as store_objectives
from training_db.store import runs as store_runs

SEED: Final = 20_261_202
TARGET_MS: Final = {"sqlite": 0.3, "postgresql": 0.5}
MISSING_RUN: Final = "no-such-run"
MISSING_HOST: Final = "no-such-host"
# A known objective and a bound no run meets (raw means are below 10): the poll of a
# control plane waiting for a result. A misspelt name is an error (did-you-mean), not this.
NO_MATCH_OBJECTIVE: Final = "COMT_activity"
OBJECTIVE_MIN: Final = 1000.0

RAW_SQL: Final = {
    "get_run": "SELECT * FROM training_runs WHERE run_id = {p}",
    "query_runs": (
        "SELECT * FROM training_runs WHERE host = {p} ORDER BY created_at DESC, run_id LIMIT 100"
    ),
    "objectives": (
        "SELECT r.*, o.raw_mean, o.normalized_mean, o.raw_std, o.normalized_std "
        "FROM training_runs r JOIN run_objectives o ON o.run_id = r.run_id "
        "WHERE o.objective_name = {p} AND o.raw_mean >= {p} "
        "ORDER BY r.created_at DESC, r.run_id LIMIT 100"
    ),
}
LABELS: Final = {
    "get_run": f"get_run({MISSING_RUN!r})",
    "query_runs": f"query_runs({{'host': {MISSING_HOST!r}}})",
    "objectives": (
        f"query_runs_by_objectives({{{NO_MATCH_OBJECTIVE!r}: {{'min': {OBJECTIVE_MIN}}}}})"
    ),
}


@dataclass
class Pair:
    """One call timed in alternation with its raw-driver twin (seconds per sample)."""

    backend: str
    scale: int
    operation: str
    ours: list[float] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)

    @property
    def added_ms(self) -> float:
        return 1000 * (statistics.median(self.ours) - statistics.median(self.raw))

    @property
    def target_ms(self) -> float:
        return TARGET_MS[self.backend]

    @property
    def met(self) -> bool:
        return self.added_ms <= self.target_ms


@dataclass
class Faces:
    """One operation through each of its faces, timed in alternation."""

    backend: str
    operation: str
    seconds: dict[str, list[float]]


def median_ms(samples: Sequence[float]) -> float:
    return 1000 * statistics.median(samples)


def iqr_ms(samples: Sequence[float]) -> tuple[float, float]:
    values = sorted(samples)
    if len(values) < 4:
        return 1000 * values[0], 1000 * values[-1]
    low, _, high = statistics.quantiles(values, n=4, method="inclusive")
    return 1000 * low, 1000 * high


def raw_sql(name: str, backend: str) -> str:
    return RAW_SQL[name].format(p="?" if backend == "sqlite" else "%s")


def load(db: TrainingDB, scale: int) -> None:
    """``scale`` workload runs with their objectives, bulk-inserted (setup, not timed)."""
    specs = [make_run(SEED, index, prefix="p") for index in range(scale)]
    queries.load_ours(db, specs, 0, SEED)
    databases.analyze(db.url)


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"answers differ: {message}")


def measure_pairs(backend: str, url: Any, scale: int, rounds: int) -> list[Pair]:
    db = TrainingDB(url)
    raw = databases.raw_connect(url)
    try:
        calls: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
            "get_run": (
                lambda: db.get_run(MISSING_RUN),
                lambda: databases.raw_read(raw, raw_sql("get_run", backend), (MISSING_RUN,)),
            ),
            "query_runs": (
                lambda: db.query_runs({"host": MISSING_HOST}),
                lambda: databases.raw_read(raw, raw_sql("query_runs", backend), (MISSING_HOST,)),
            ),
            "objectives": (
                lambda: db.query_runs_by_objectives({NO_MATCH_OBJECTIVE: {"min": OBJECTIVE_MIN}}),
                lambda: databases.raw_read(
                    raw, raw_sql("objectives", backend), (NO_MATCH_OBJECTIVE, OBJECTIVE_MIN)
                ),
            ),
        }
        found = db.query_runs(limit=1)
        _expect(len(found) == 1, f"the {scale}-run database has no runs")
        pairs = []
        for name, (ours, theirs) in calls.items():
            mine, other = ours(), theirs()
            _expect(mine in (None, []) and other == [], f"{name}: ours {mine!r}, raw {other!r}")
            timed = time_alternating({"ours": ours, "raw": theirs}, rounds)
            pairs.append(Pair(backend, scale, name, timed["ours"], timed["raw"]))
        return pairs
    finally:
        raw.close()
        db.dispose()


def measure_faces(backend: str, url: Any, rounds: int) -> list[Faces]:
    """get_run (a read) and heartbeat (a write, which has a safe twin) through each face."""
    db = training_db.configure(url)
    run_id = db.query_runs(limit=1)[0]["run_id"]
    read_faces: dict[str, Callable[[], Any]] = {
        "TrainingDB method": lambda: db.get_run(MISSING_RUN),
        "training_db.get_run": lambda: training_db.get_run(MISSING_RUN),  # type: ignore[attr-defined]
        "db.read(store.get_run)": lambda: db.read(store_runs.get_run, MISSING_RUN),
    }
    write_faces: dict[str, Callable[[], Any]] = {
        "TrainingDB method": lambda: db.heartbeat(run_id),
        "training_db.heartbeat": lambda: training_db.heartbeat(run_id),  # type: ignore[attr-defined]
        "db.write(store.heartbeat)": lambda: db.write(store_runs.heartbeat, run_id),
        "safe.heartbeat": lambda: safe.heartbeat(run_id),  # type: ignore[attr-defined]
    }
    _expect(bool(safe.heartbeat(run_id)), "safe.heartbeat did not reach the database")  # type: ignore[attr-defined]
    _expect(
        db.query_runs_by_objectives({NO_MATCH_OBJECTIVE: {"min": OBJECTIVE_MIN}})
        == db.read(
            store_objectives.query_runs_by_objectives, {NO_MATCH_OBJECTIVE: {"min": OBJECTIVE_MIN}}
        ),
        "faces",
    )
    try:
        return [
            Faces(backend, "get_run (missing id)", time_alternating(read_faces, rounds)),
            Faces(backend, "heartbeat (existing run)", time_alternating(write_faces, rounds)),
        ]
    finally:
        db.dispose()


def pair_table(pairs: Sequence[Pair]) -> list[str]:
    lines = [
        "| backend | runs | call | ours ms (IQR) | raw ms (IQR) | ours - raw ms | target | |",
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for pair in pairs:
        ours_low, ours_high = iqr_ms(pair.ours)
        raw_low, raw_high = iqr_ms(pair.raw)
        lines.append(
            f"| {pair.backend} | {pair.scale:,} | `{LABELS[pair.operation]}` "
            f"| {median_ms(pair.ours):.3f} ({ours_low:.3f}-{ours_high:.3f}) "
            f"| {median_ms(pair.raw):.3f} ({raw_low:.3f}-{raw_high:.3f}) "
            f"| {pair.added_ms:+.3f} | ≤ {pair.target_ms} | {'met' if pair.met else 'NOT met'} |"
        )
    return lines


def faces_table(faces: Sequence[Faces]) -> list[str]:
    lines = ["| backend | operation | face | median ms (IQR) |", "|---|---|---|---:|"]
    for entry in faces:
        for face, samples in entry.seconds.items():
            low, high = iqr_ms(samples)
            lines.append(
                f"| {entry.backend} | {entry.operation} | {face} "
                f"| {median_ms(samples):.3f} ({low:.3f}-{high:.3f}) |"
            )
    return lines


def target_lines(pairs: Sequence[Pair]) -> list[str]:
    lines = []
    for backend in dict.fromkeys(pair.backend for pair in pairs):
        mine = [pair for pair in pairs if pair.backend == backend]
        worst = max(mine, key=lambda pair: pair.added_ms)
        verdict = "met" if all(pair.met for pair in mine) else "NOT met"
        lines.append(
            f"- {backend}: added cost ≤ {TARGET_MS[backend]} ms per call at every scale: "
            f"**{verdict}** (largest: {worst.added_ms:+.3f} ms, {worst.operation} at "
            f"{worst.scale:,} runs)"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.percall", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small scales, few rounds")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--scales", help="comma-separated run counts (default 200,20000)")
    parser.add_argument("--rounds", type=int, help="alternated samples per call (default 200)")
    parser.add_argument("--output", type=Path, help="also write the tables to this file")
    args = parser.parse_args(argv)
    scales = [
        int(s) for s in (args.scales or ("200,1000" if args.quick else "200,20000")).split(",")
    ]
    rounds = args.rounds or (20 if args.quick else 200)
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    pairs: list[Pair] = []
    faces: list[Faces] = []
    with tempfile.TemporaryDirectory() as spool:
        os.environ.setdefault("TRAINING_DB_SPOOL_DIR", spool)
        for name in backends:
            with Backend(name) as backend:
                for scale in scales:
                    url = backend.new_database(f"percall{scale}")
                    setup = TrainingDB(url)
                    setup.init_db()
                    load(setup, scale)
                    setup.dispose()
                    pairs.extend(measure_pairs(name, url, scale, rounds))
                    if scale == scales[0]:
                        faces.extend(measure_faces(name, url, rounds))
    command = "python -m bench.percall " + " ".join(argv if argv is not None else [])
    text = "\n".join(
        [
            f"`{command.strip()}` — {rounds} alternated samples per call",
            "",
            *pair_table(pairs),
            "",
            *target_lines(pairs),
            "",
            *faces_table(faces),
        ]
    )
    print(text)
    if args.output is not None:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
