"""Public operations, declared once; every face of an operation is made from its declaration.

A public operation is a function that does the work: a repository function in ``store/``
(its first parameter is the ``Session``; it never commits) or a use case in ``ops/`` (its
first parameter is the database; it may run several transactions). Its *declaration* is
one line in its family's `Operations` class, next to the function::

    class RunOperations(Operations):
        insert_run = write(insert_run, now={"created_at": ALWAYS})
        get_run = read(get_run, returns="run")

From the declarations come, without a line written per operation:

* the ``TrainingDB`` method (the families are ``TrainingDB``'s base classes, and a
  declaration is a descriptor): one transaction around the function, retried as the
  declaration allows (``training_db.db``);
* the module-level function with the same signature, acting on the default database
  (``training_db.insert_run``, made in ``training_db.api``);
* for each write, its best-effort twin and spool record (``training_db.safe``), with the
  "now" arguments filled in when the call is made;
* the operations table of the docs (``docs/hooks.py``).

This module knows no table and no engine: only what a declaration says, and the registry
of all of them (`operations`).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Concatenate, Final, Generic, Literal, ParamSpec, TypeVar, overload

from training_db.core.errors import InvalidArgumentError

P = ParamSpec("P")
R = TypeVar("R")

Kind = Literal["read", "write"]
Scope = Literal["session", "database"]
Returns = Literal["value", "run", "runs"]
# Given the call's arguments by name: is this "now" argument filled in at call time?
NowCondition = Callable[[Mapping[str, Any]], bool]


def ALWAYS(arguments: Mapping[str, Any]) -> bool:
    """A "now" argument the twin fills in whatever the other arguments are."""
    return True


def when(argument: str, *values: Any) -> NowCondition:
    """A "now" argument the twin fills in only when ``argument`` is one of ``values``."""

    def condition(arguments: Mapping[str, Any]) -> bool:
        return arguments.get(argument) in values

    condition.__qualname__ = f"when({argument!r}, {', '.join(map(repr, values))})"
    condition.__doc__ = f"{argument} is {' or '.join(map(repr, values))}"  # for the twins' docs
    return condition


class Operation(Generic[P, R]):
    """One public operation: its function and what its declaration says.

    A descriptor: on a database instance it is the bound method (``db.insert_run(...)``),
    on a class the plain function with ``self`` first. Type checkers see the method's exact
    signature: the function's, without its first parameter.
    """

    def __init__(
        self,
        function: Callable[Concatenate[Any, P], R],
        *,
        kind: Kind,
        scope: Scope,
        idempotent: bool,
        now: Mapping[str, NowCondition],
        history: tuple[str, ...],
        returns: Returns,
        replay: Callable[..., Any] | None,
        safe: bool,
    ) -> None:
        self.function = function
        self.kind = kind
        self.scope = scope
        self.idempotent = idempotent
        self.now = dict(now)
        self.history = history
        self.returns = returns
        self.replay = replay
        self.safe = safe
        self.name = function.__name__
        self.family = ""
        full = inspect.signature(function)
        parameters = list(full.parameters.values())
        # The public signature: the function's without the session (or database) parameter.
        self.signature = full.replace(parameters=parameters[1:])
        # "now" arguments are the replay function's when there is one (its public twin has none).
        spooled = inspect.signature(replay).parameters if replay else self.signature.parameters
        unknown = [name for name in (*self.now, *history) if name not in spooled]
        if unknown:
            raise TypeError(f"{self.name}: declared arguments {unknown} are not parameters")
        self.method = self._make_method(parameters[1:])

    def _make_method(self, parameters: list[inspect.Parameter]) -> Callable[..., R]:
        """The plain function that becomes the method: ``self._call(op, args, kwargs)``."""
        operation = self

        def method(self: Any, /, *args: Any, **kwargs: Any) -> R:
            result: R = self._call(operation, args, kwargs)
            return result

        method.__name__ = self.name
        method.__qualname__ = self.name
        method.__doc__ = self.function.__doc__
        method.__module__ = self.function.__module__
        self_parameter = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
        method.__signature__ = self.signature.replace(  # type: ignore[attr-defined]
            parameters=[self_parameter, *parameters]
        )
        return method

    def __set_name__(self, owner: type, name: str) -> None:
        if name != self.name:
            raise TypeError(f"{owner.__name__}.{name} declares {self.name!r}: use the same name")
        self.family = owner.__name__
        register(self)

    @overload
    def __get__(self, database: None, owner: type[Any]) -> Callable[Concatenate[Any, P], R]: ...

    @overload
    def __get__(self, database: object, owner: type[Any]) -> Callable[P, R]: ...

    def __get__(self, database: object | None, owner: type[Any]) -> Callable[..., R]:
        if database is None:
            return self.method
        return types.MethodType(self.method, database)

    @property
    def summary(self) -> str:
        """The first line of the function's docstring."""
        return inspect.cleandoc(self.function.__doc__ or "").partition("\n")[0]

    def fill_now(self, arguments: dict[str, Any], now: object) -> None:
        """Set each "now" argument that is None (and whose condition holds) to ``now``."""
        for name, condition in self.now.items():
            if arguments.get(name) is None and condition(arguments):
                arguments[name] = now

    def __repr__(self) -> str:
        return f"<{self.kind} operation {self.name} of {self.family}>"


class Operations:
    """Base of an operation family: a class whose attributes are declarations.

    ``TrainingDB`` inherits every family, so each declaration becomes its method.
    """


_REGISTRY: Final[dict[str, Operation[Any, Any]]] = {}


def register(operation: Operation[Any, Any]) -> None:
    """Add a declared operation to the registry; a second one of the same name is an error."""
    existing = _REGISTRY.get(operation.name)
    if existing is not None and existing is not operation:
        raise TypeError(
            f"operation {operation.name!r} is declared by {existing.family} and {operation.family}"
        )
    _REGISTRY[operation.name] = operation


def operations() -> Iterator[Operation[Any, Any]]:
    """Every declared operation, in declaration order."""
    return iter(list(_REGISTRY.values()))


def operation(name: str) -> Operation[Any, Any]:
    """The declared operation called ``name``; InvalidArgumentError naming the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise InvalidArgumentError(f"unknown operation {name!r}; known: {known}") from None


def read(
    function: Callable[Concatenate[Any, P], R],
    *,
    scope: Scope = "session",
    returns: Returns = "value",
) -> Operation[P, R]:
    """Declare a read: one read transaction (retried after a lost connection)."""
    return Operation(
        function,
        kind="read",
        scope=scope,
        idempotent=True,
        now={},
        history=(),
        returns=returns,
        replay=None,
        safe=False,
    )


def write(
    function: Callable[Concatenate[Any, P], R],
    *,
    idempotent: bool = False,
    now: Mapping[str, NowCondition] | None = None,
    history: tuple[str, ...] = (),
    scope: Scope = "session",
    replay: Callable[..., Any] | None = None,
    safe: bool = True,
) -> Operation[P, R]:
    """Declare a write: one write transaction, with a best-effort twin in ``safe``.

    ``idempotent``: applied twice in a row it leaves the same rows and returns the same
    value, so a call whose COMMIT was lost with its connection may be sent again.
    ``now``: arguments the twin fills in with the call time (when None and the condition
    holds), so that a replay records what the call would have. ``history``: arguments
    holding a W&B history, spooled as row dicts. ``replay``: the store function a spooled
    call runs instead, when the public one has no argument for its "now". ``safe``: the
    write has a best-effort twin (maintenance and deletes of whole histories have none).
    """
    return Operation(
        function,
        kind="write",
        scope=scope,
        idempotent=idempotent,
        now=now or {},
        history=history,
        returns="value",
        replay=replay,
        safe=safe and scope == "session",
    )
