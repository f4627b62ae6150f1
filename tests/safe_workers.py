"""A training script's best-effort calls, run as a process of its own by tests/test_safe_replay.py.

``python -m tests.safe_workers RUN_ID`` makes the calls of a short run through
`training_db.safe` on the database of ``TRAINING_DB_URL`` (the first one a call the test's
database refuses, run ``RUN_ID-poison`` on host ``poison``), prints the statuses on one line,
then reads one command from stdin:

* ``exit``: return at once, ending the process normally (``atexit`` hooks run);
* ``wait``: wait (at most 60 s) until this host's spool is empty, without calling anything,
  print ``empty`` or ``still spooled``, then return.

Kept free of pytest so that the process imports only this and ``training_db``.
"""

from __future__ import annotations

import logging
import sys
import time

from training_db import safe


def main(run_id: str) -> int:
    results = [
        safe.insert_run(f"{run_id}-poison", None, {}, host="poison"),
        safe.insert_run(run_id, None, {"training": {"batch_size": 8}}, host="ec2"),
        safe.update_run_status(run_id, "running"),
        safe.log_history(run_id, {"loss": [1.0, 0.5]}),
        safe.finish_run(run_id, "completed", {"loss": 0.5}),
    ]
    print(" ".join(result.status for result in results), flush=True)
    command = sys.stdin.readline().strip()
    if command == "wait":
        spool = safe.Spool()
        deadline = time.monotonic() + 60
        while spool.has_records() and time.monotonic() < deadline:
            time.sleep(0.05)
        print("still spooled" if spool.has_records() else "empty", flush=True)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    sys.exit(main(sys.argv[1]))
