"""Malformed database URLs: a library error naming the source, and never the password.

Every URL below goes through each way a URL reaches the package: ``TrainingDB(url)`` and
``resolve_url``, ``training_db.configure``, the ``training_db.safe`` twins, and the command
line (``--url`` and ``TRAINING_DB_URL``); every message, log line, result and output is
searched for the password in the forms it can take in text.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from click.testing import CliRunner

import training_db
from training_db import DatabaseUnavailableError, TrainingDB, safe
from training_db.cli import main
from training_db.core.errors import InvalidArgumentError, TrainingDBError
from training_db.core.settings import resolve_url

RESOLUTION_VARIABLES = (
    "TRAINING_DB_URL",
    "TRAINING_DB_HOST",
    "TRAINING_DB_PORT",
    "TRAINING_DB_NAME",
    "TRAINING_DB_USER",
    "TRAINING_DB_PASSWORD",
    "TRAINING_DB_SSLMODE",
    "TRAINING_DB_PATH",
)
CLI_COMMANDS = (("runs",), ("stats",), ("current",), ("init",), ("show", "X"))
CLOSED = "127.0.0.1:1"  # nothing listens there: a valid URL fails fast, as unavailable


@dataclass(frozen=True)
class Case:
    """A URL (or host variables) holding ``secrets``; ``valid`` ones parse but cannot connect."""

    name: str
    secrets: tuple[str, ...]
    url: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    valid: bool = False

    def environment(self) -> dict[str, str]:
        return {"TRAINING_DB_URL": self.url} if self.url is not None else dict(self.env)

    @property
    def source(self) -> str:
        """The variable an environment-route error must name."""
        return "TRAINING_DB_URL" if self.url is not None else "TRAINING_DB_"


CASES = (
    Case("host forgotten", ("S3cretPW",), url="postgresql://root:S3cretPW/trainingruns"),
    Case(
        "unencoded @ in the password",
        ("S3cret@PWtail", "S3cret", "PWtail"),
        url=f"postgresql://u:S3cret@PWtail@{CLOSED}/db",
    ),
    Case(
        "unencoded @ and / in the password",
        ("p@ss/w:rd", "ss/w", "w:rd"),
        url="postgresql://trainer:p@ss/w:rd@127.0.0.1:1/trainingruns",
    ),
    Case("port not a number", ("S3cretPW",), url="postgresql://u:S3cretPW@host:notaport/db"),
    Case("password, no user, no host", ("S3cretPW",), url="postgresql://:S3cretPW@/db"),
    Case("not a url", ("not a url",), url="not a url"),
    Case("postgres://", ("S3cretPW",), url=f"postgres://u:S3cretPW@{CLOSED}/db"),
    Case("misspelt dialect", ("S3cretPW",), url=f"postgresq://u:S3cretPW@{CLOSED}/db"),
    Case("mysql", ("S3cretPW",), url=f"mysql://u:S3cretPW@{CLOSED}/db"),
    Case("unsupported driver", ("S3cretPW",), url=f"postgresql+asyncpg://u:S3cretPW@{CLOSED}/d"),
    *(
        Case(
            f"unencoded {char!r} in the password",
            (f"S3c{char}retPW", "S3c", "retPW"),
            url=f"postgresql://trainer:S3c{char}retPW@{CLOSED}/db",
            valid=True,
        )
        for char in "%/:#"
    ),
    Case(
        "host variables, a password with every special character",
        ("S3c@ret/Pass:wd%#Tail", "S3c", "Tail"),
        env={
            "TRAINING_DB_HOST": "127.0.0.1",
            "TRAINING_DB_PORT": "1",
            "TRAINING_DB_USER": "trainer",
            "TRAINING_DB_PASSWORD": "S3c@ret/Pass:wd%#Tail",
        },
        valid=True,
    ),
    Case(
        "user:password@ in TRAINING_DB_HOST",
        ("S3cretPW",),
        env={"TRAINING_DB_HOST": "root:S3cretPW@127.0.0.1", "TRAINING_DB_PASSWORD": "S3cretPW"},
    ),
    Case(
        "TRAINING_DB_PORT not a number",
        ("S3cretPW",),
        env={
            "TRAINING_DB_HOST": "127.0.0.1",
            "TRAINING_DB_PORT": "notaport",
            "TRAINING_DB_PASSWORD": "S3cretPW",
        },
    ),
)


def forms(secrets: tuple[str, ...]) -> set[str]:
    """Each secret as it may appear in text: plain and URL-quoted."""
    return {
        form for secret in secrets for form in (secret, quote(secret, safe=""), quote_plus(secret))
    }


def assert_clean(case: Case, texts: list[str]) -> None:
    for text in texts:
        for secret in forms(case.secrets):
            assert secret not in text, f"{case.name}: {secret!r} in {text!r}"


def expected_error(case: Case) -> type[TrainingDBError]:
    return DatabaseUnavailableError if case.valid else InvalidArgumentError


def exception_texts(error: BaseException) -> list[str]:
    return [str(error), repr(error), "".join(traceback.format_exception(error))]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No TRAINING_DB_* resolution variable from outside; a spool of the test's own."""
    for name in RESOLUTION_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRAINING_DB_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("TRAINING_DB_SAFE_TIMEOUT", "60")
    training_db.api._default = None
    yield
    assert safe.drain(60), "a best-effort call was still running at the end of the test"
    default, training_db.api._default = training_db.api._default, None
    if default is not None:
        default.dispose()


def failure(case: Case, call: Callable[[], object]) -> BaseException:
    """What ``call`` raises: the library's error for ``case``, with a one-line message."""
    with pytest.raises(expected_error(case)) as raised:
        call()
    assert "\n" not in str(raised.value), str(raised.value)
    return raised.value


def read_stats(url: str | None) -> None:
    database = TrainingDB(url)
    try:
        database.get_stats()
    finally:
        database.dispose()


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_trainingdb_and_resolve_url(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    routes: list[tuple[str | None, str]] = []
    if case.url is not None:
        routes.append((case.url, "the url argument"))
    routes.append((None, case.source))  # last: it sets the environment
    texts: list[str] = []
    for url, source in routes:
        if url is None:
            for name, value in case.environment().items():
                monkeypatch.setenv(name, value)
        if case.valid:
            database = TrainingDB(url)  # a valid URL: the error comes when it connects
            texts += [repr(database), str(database.url), repr(database.url)]
        else:
            error = failure(case, lambda: resolve_url(url))  # noqa: B023 - called at once
            assert str(error).startswith(source), error
            texts += exception_texts(error)
        error = failure(case, lambda: read_stats(url))  # noqa: B023 - called at once
        texts += exception_texts(error)
    assert_clean(case, texts)


def configure_and_read(url: str | None) -> None:
    training_db.configure(url)
    training_db.get_stats()


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_module_functions(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    texts: list[str] = []
    if case.url is not None:
        texts += exception_texts(failure(case, lambda: configure_and_read(case.url)))
    for name, value in case.environment().items():
        monkeypatch.setenv(name, value)
    texts += exception_texts(failure(case, lambda: configure_and_read(None)))
    training_db.api._default = None  # the first call resolves the environment itself
    texts += exception_texts(failure(case, lambda: training_db.insert_run("run-1", None, {})))
    assert_clean(case, texts)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_safe_twins_return_a_clean_result(
    case: Case, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="training_db.safe")
    for name, value in case.environment().items():
        monkeypatch.setenv(name, value)
    result = safe.insert_run("run-1", None, {"learning_rate": 0.1})
    assert result.status == "spooled"
    assert result.error is not None
    if not case.valid:
        assert "InvalidArgumentError" in result.error and case.source in result.error
    records = [record.getMessage() for record in caplog.records]
    assert any("spooled" in record for record in records), records
    spooled = [path.read_text() for path in (tmp_path / "spool").iterdir()]
    assert_clean(case, [repr(result), result.error, caplog.text, *records, *spooled])


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_cli_prints_one_clean_line(case: Case) -> None:
    runs = []
    for command in CLI_COMMANDS:
        if case.url is not None:
            runs.append(("--url", CliRunner().invoke(main, ["--url", case.url, *command])))
        runs.append((case.source, CliRunner(env=case.environment()).invoke(main, list(command))))
    texts = []
    for source, result in runs:
        assert result.exit_code == 1, (source, result.output)
        assert isinstance(result.exception, SystemExit), result.exception
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert "Traceback" not in result.output
        if case.valid:
            assert "database unavailable" in lines[0]
        else:
            assert lines[0].startswith(f"error: {source}"), lines[0]
        texts += [result.stdout, result.stderr, result.output]
    assert_clean(case, texts)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://trainer:pw@db.internal/trainingruns", r"'postgres'.*use postgresql://"),
        ("postgresq://trainer:pw@db.internal/trainingruns", r"'postgresq'.*unknown"),
        ("mysql://trainer:pw@db.internal/trainingruns", r"'mysql'.*does not support"),
        ("postgresql+psycopg://trainer:pw@db.internal/trainingruns", r"driver 'psycopg'"),
        ("sqlite+aiosqlite:///runs.db", r"driver 'aiosqlite'"),
        ("not a url", r"not a valid database URL \(no 'dialect://'"),
    ],
)
def test_unknown_dialects_name_the_valid_backends(url: str, expected: str) -> None:
    for call in (lambda: resolve_url(url), lambda: TrainingDB(url)):
        with pytest.raises(InvalidArgumentError, match=expected) as raised:
            call()
        message = str(raised.value)
        if "dialect://" not in message:  # the unparsable one shows the expected shape instead
            assert "sqlite://" in message and "postgresql://" in message and "psycopg2" in message
        assert isinstance(raised.value, ValueError)
        chain = "".join(traceback.format_exception(raised.value))
        assert "During handling" not in chain and "sqlalchemy.exc" not in chain


def test_copy_names_its_options() -> None:
    result = CliRunner().invoke(
        main, ["copy", "--from", "postgres://u:S3cretPW@h/db", "--to", "sqlite://"]
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: --from names the database dialect 'postgres'")
    assert "S3cretPW" not in result.output
