"""Suggestions ("did you mean ...?") for a name that matched nothing.

One rule for every name a caller can mistype (a status, a filter key, an ``order_by``
column, a JSON path, a history metric, an objective): the close spellings (``difflib``),
then the known names that contain it (``loss`` → ``final_loss``). `UnknownNameError`
carries the suggestions.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any, Final

from training_db.core.errors import UnknownNameError

MAX_SUGGESTIONS: Final = 3
# difflib's ratio above which a known name counts as a likely spelling of the given one.
CLOSENESS: Final = 0.6
# How much less close than the closest a known name may be and still be suggested.
MARGIN: Final = 0.1
# A name shorter than this is not looked for inside others: "a" would match everything.
MIN_SUBSTRING: Final = 3


def suggestions(name: str, known: Iterable[str], limit: int = MAX_SUGGESTIONS) -> list[str]:
    """Up to ``limit`` known names that ``name`` was probably meant to be, best first."""
    candidates = sorted({candidate for candidate in known if candidate != name})
    if not isinstance(name, str) or not name or not candidates:
        return []
    folded = name.casefold()
    found: list[str] = [c for c in candidates if c.casefold() == folded]
    lowered = {candidate.casefold(): candidate for candidate in candidates}
    close = difflib.get_close_matches(folded, list(lowered), n=limit, cutoff=CLOSENESS)
    if close:
        # Only the nearly best: "training.batchsize" is close to "training.seed" too.
        ranked = sorted(close, key=lambda match: (-_ratio(folded, match), match))
        best = _ratio(folded, ranked[0])
        found += [lowered[match] for match in ranked if _ratio(folded, match) >= best - MARGIN]
    if len(folded) >= MIN_SUBSTRING:
        found += sorted((c for c in candidates if folded in c.casefold()), key=len)
    unique = list(dict.fromkeys(found))
    return unique[:limit]


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'a' or 'b'?"`` for a message's end, or ``""`` without a suggestion."""
    return hint(suggestions(name, known))


def hint(names: list[str]) -> str:
    """The ``"; did you mean ...?"`` clause for already chosen suggestions (``""`` if none)."""
    if not names:
        return ""
    quoted = [repr(name) for name in names]
    listed = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    return f"; did you mean {listed}?"


def unknown_name(message: str, name: str, known: Iterable[str], then: str = "") -> UnknownNameError:
    """`UnknownNameError`: ``message``, ``then`` (say, ``"; valid: a, b"``), and "did you
    mean ...?" when a known name is close."""
    close = suggestions(name, known)
    return UnknownNameError(message + then + hint(close), name=name, suggestions=close)


def _ratio(name: str, candidate: str) -> float:
    return difflib.SequenceMatcher(None, name, candidate).ratio()


def require_one_of(value: Any, valid: Sequence[str], message: str) -> str:
    """``value`` as a string when it is one of the fixed names ``valid``; otherwise
    `UnknownNameError` with ``message``, the valid names, and "did you mean" when one is close.
    """
    if value not in valid:
        raise unknown_name(message, str(value), valid, f"; valid: {', '.join(valid)}")
    return str(value)
