"""Messages without secrets: what `training_db.safe` logs, returns and keeps never holds the
database password."""

from __future__ import annotations

import os
from urllib.parse import quote, quote_plus

from training_db import api
from training_db.api import TrainingDB
from training_db.core.settings import url_password


def _secrets() -> set[str]:
    """The password of the default database and of the environment, in the forms it may take
    in text (plain and URL-quoted)."""
    found: set[str] = set()
    candidates: list[str | None] = [os.environ.get("TRAINING_DB_PASSWORD")]
    candidates.append(url_password(os.environ.get("TRAINING_DB_URL", "")))
    default = api._default
    if default is not None:
        candidates.append(default.url.password)
    for password in candidates:
        if password:
            found.update({password, quote(password, safe=""), quote_plus(password)})
    return found


def redact(text: str) -> str:
    """``text`` with every known password replaced by ``***``."""
    for secret in sorted(_secrets(), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def describe(exc: BaseException, database: TrainingDB | None = None) -> str:
    """The exception's type and first line, without the password (also ``database``'s)."""
    try:
        lines = str(exc).strip().splitlines()
    except Exception:  # an exception whose __str__ fails must not break the caller's path
        lines = []
    first = lines[0] if lines else ""
    text = redact(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)
    password = None if database is None else database.url.password
    return text.replace(password, "***") if password else text


def about(function: str, run_id: object) -> str:
    """``function(run_id='…')`` for a log line: the run shortened, the password removed."""
    shown = repr(run_id) if isinstance(run_id, str) else "?"
    if len(shown) > 80:
        shown = shown[:77] + "...'"
    return redact(f"{function}(run_id={shown})")
