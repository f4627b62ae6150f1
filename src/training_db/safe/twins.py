"""The best-effort twins, made from the declared operations: one for every write whose
declaration gives it one (`Operation.safe`), with that operation's signature.

Nothing here names an operation: a write declared in its family (``training_db.store``) has
a twin, a spool record and a replay without a line written in ``training_db.safe``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Final

from training_db.core.operations import ALWAYS, NowCondition, Operation, operations
from training_db.safe.calls import SafeResult
from training_db.safe.redact import describe
from training_db.safe.worker import call, drop

# A twin is called with every argument by name (its spool record holds them so): its
# operation may not have positional-only or variadic parameters.
_BY_NAME: Final = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
# The order WRITE_FUNCTIONS was first published in; writes declared since follow, in the
# order they were declared.
_PUBLISHED_ORDER: Final = (
    "insert_run",
    "update_run_status",
    "attach_blog_post",
    "attach_conversation",
    "attach_crash_data",
    "set_tags",
    "delete_tag",
    "insert_objective",
    "update_objective_metric",
    "delete_run_objectives",
    "finish_run",
    "log_history",
    "heartbeat",
)


def twin(operation: Operation[..., Any]) -> Callable[..., SafeResult[Any]]:
    """The best-effort twin of the declared write ``operation``.

    Its signature is the operation's, returning a `SafeResult` of the operation's value.
    Python would check a call's arguments against a signature before the body runs, and a
    mistyped keyword would raise ``TypeError`` into the training code: the twin takes any
    arguments, binds them to the signature itself and drops (logged, status ``dropped``) a
    call that does not bind.
    """
    name, signature = operation.name, operation.signature
    if operation.kind != "write" or any(
        p.kind not in _BY_NAME for p in signature.parameters.values()
    ):
        raise TypeError(f"{name}: a twin needs a write whose parameters can all be named")

    def best_effort(*args: Any, **kwargs: Any) -> SafeResult[Any]:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:
            problem = describe(TypeError(f"{name}() {exc}"))
            return drop(name, _run_id(signature, args, kwargs), problem)
        bound.apply_defaults()
        return call(operation, dict(bound.arguments))

    returns = _annotation_text(signature.return_annotation)
    best_effort.__name__ = best_effort.__qualname__ = name
    best_effort.__module__ = "training_db.safe"
    best_effort.__doc__ = _docstring(operation)
    best_effort.__signature__ = signature.replace(  # type: ignore[attr-defined]
        return_annotation=f"SafeResult[{returns}]"
    )
    return best_effort


def _run_id(signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The ``run_id`` of a call that does not bind, for the log line (None when not given)."""
    if "run_id" in kwargs:
        return kwargs["run_id"]
    names = list(signature.parameters)
    position = names.index("run_id") if "run_id" in names else len(args)
    return args[position] if position < len(args) else None


def _annotation_text(annotation: Any) -> str:
    if annotation is inspect.Signature.empty:
        return "Any"
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def _docstring(operation: Operation[..., Any]) -> str:
    """What the twin does, and the "now" arguments its declaration names, in words."""
    text = (
        f"Best-effort `training_db.{operation.name}`: never raises, and a call the database"
        " could not take is spooled and replayed later (see `training_db.safe`)."
    )
    captured = [_now_text(operation, name, when) for name, when in operation.now.items()]
    if captured:
        text += (
            '\n\n"Now" is captured when the call is made, so that a replay records what this'
            " call would have: " + "; ".join(captured) + "."
        )
    return text


def _now_text(operation: Operation[..., Any], name: str, condition: NowCondition) -> str:
    if name not in operation.signature.parameters:
        replay = getattr(operation.replay, "__name__", "the function that runs it")
        return f"the time of the call is given as ``{name}`` to ``{replay}``, which runs the call"
    text = f"``{name}`` defaults to the time of the call"
    if condition is not ALWAYS:
        text += f" when {condition.__doc__ or condition.__qualname__}"
    return text


def twinned_operations() -> list[Operation[Any, Any]]:
    """The declared writes that have a twin, in declaration order."""
    return [operation for operation in operations() if operation.safe]


def _published_position(name: str) -> int:
    return _PUBLISHED_ORDER.index(name) if name in _PUBLISHED_ORDER else len(_PUBLISHED_ORDER)


TWINS: Final[dict[str, Callable[..., SafeResult[Any]]]] = {
    operation.name: twin(operation) for operation in twinned_operations()
}
#: The write functions that have a twin here.
WRITE_FUNCTIONS: Final = tuple(sorted(TWINS, key=_published_position))
