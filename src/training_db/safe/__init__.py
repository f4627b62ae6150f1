"""Best-effort calls for training code: they never raise, never block for long, lose nothing.

```python
from training_db import safe

safe.insert_run(run_id, None, config, host="ec2")
```

Each write function that training code calls has a twin here with the same signature, made
from the operation's declaration (`training_db.core.operations`; `WRITE_FUNCTIONS` lists
them: maintenance writes, W&B imports and deletes of whole histories have none). A call
runs in a daemon worker thread and is waited for at most ``TRAINING_DB_SAFE_TIMEOUT``
seconds (default 20).
What happens to a call that fails depends on whether retrying it could cure the failure;
`classify_failure` decides, by one table (`FAILURE_HANDLING`, shown in docs/reliability.md):

* *transient* (the database could not be reached, a lock conflict, a timeout, a schema an
  operator can upgrade): one warning is logged (logger ``training_db.safe``) and the call
  is appended to a durable local spool, to be applied later by `replay`;
* *invalid* arguments (a ``ValueError`` or ``TypeError`` from validation, a duplicate, or
  arguments that do not fit the signature): logged and dropped, as the training scripts'
  own ``try``/``except`` did: sending it again could not make it right;
* *refused* (the database refused the statement, stored data is damaged, any unexpected
  exception): retrying gives the same answer, so the call is kept in ``spool.rejected``
  instead of waiting in the spool, where it would hold back every later call.

Each function returns a `SafeResult`, which is true when the call reached the database.

Replays record what the original call would have: "now" is captured when the call is made
(``created_at`` of ``insert_run``, ``started_at`` of ``update_run_status('running')``,
``ended_at`` of a terminal status, of ``finish_run`` and of ``attach_crash_data``, and the
heartbeat time).

The spool is the JSON-lines file ``spool.jsonl`` in ``$TRAINING_DB_SPOOL_DIR`` (default
``$XDG_STATE_HOME/mangodb/spool``, i.e. ``~/.local/state/mangodb/spool``), one record per
call: ``{"id", "recorded_at", "function", "args", "kwargs"}``. Values are encoded with
`training_db.core.jsoncodec` (NaN, ±Infinity and NUL survive) and datetimes are tagged as
``{"$datetime": "<ISO 8601>"}``. Records never hold the database URL or a password.

While records of this process wait in the spool, later calls join them there, so that the
calls of a process reach the database in the order they were made. Unless
``TRAINING_DB_SPOOL_AUTO_REPLAY=0``, they do not wait long: a call first replays a non-empty
spool (at most once per ``TRAINING_DB_SPOOL_REPLAY_INTERVAL`` seconds, default 30); the
worker thread replays them as soon as the database answers again, trying after 1 s, then
2 s, 4 s, ... up to that interval; and an ``atexit`` hook replays them once more when the
interpreter exits (for at most the safe timeout). With automatic replay off, they wait for
`replay` or ``training-db replay``.

Inside, one module per concern, each importing only those before it: ``config`` (settings),
``failures`` (the table), ``redact`` (no password in any message), ``spool`` (the files and
their locks), ``records`` (the record format), ``calls`` (a call captured and run, as its
declaration says), ``replaying``, ``worker`` (the thread, a call's path, the exit hook) and
``twins`` (made from the declarations).
"""

from __future__ import annotations

# Names imported "as" themselves are not in __all__ but stay reachable here, as before the
# split into modules: the settings' and the spool files' names, the logger, the exit hook.
from training_db.safe.calls import SafeResult
from training_db.safe.config import AUTO_REPLAY_ENV as AUTO_REPLAY_ENV
from training_db.safe.config import DEFAULT_REPLAY_INTERVAL_S as DEFAULT_REPLAY_INTERVAL_S
from training_db.safe.config import DEFAULT_TIMEOUT_S as DEFAULT_TIMEOUT_S
from training_db.safe.config import REPLAY_INTERVAL_ENV as REPLAY_INTERVAL_ENV
from training_db.safe.config import TIMEOUT_ENV as TIMEOUT_ENV
from training_db.safe.config import logger as logger
from training_db.safe.failures import (
    FAILURE_HANDLING,
    CallAction,
    Failure,
    ReplayAction,
    classify_failure,
)
from training_db.safe.records import SpooledCall
from training_db.safe.replaying import MalformedLine, RejectedRecord, ReplayReport, replay
from training_db.safe.spool import LOCK_FILE as LOCK_FILE
from training_db.safe.spool import REJECTED_FILE as REJECTED_FILE
from training_db.safe.spool import REPLAY_LOCK_FILE as REPLAY_LOCK_FILE
from training_db.safe.spool import SPOOL_DIR_ENV as SPOOL_DIR_ENV
from training_db.safe.spool import SPOOL_FILE as SPOOL_FILE
from training_db.safe.spool import Spool, spool_dir
from training_db.safe.twins import TWINS, WRITE_FUNCTIONS
from training_db.safe.worker import _replay_at_exit as _replay_at_exit
from training_db.safe.worker import drain

globals().update(TWINS)

__all__ = [
    "FAILURE_HANDLING",
    "WRITE_FUNCTIONS",
    "CallAction",
    "Failure",
    "MalformedLine",
    "RejectedRecord",
    "ReplayAction",
    "ReplayReport",
    "SafeResult",
    "Spool",
    "SpooledCall",
    "classify_failure",
    "drain",
    "replay",
    "spool_dir",
]
__all__.extend(TWINS)  # the twins, made from the declared operations
