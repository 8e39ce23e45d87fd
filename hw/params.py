"""Parameter declarations and checks: one range check and one message for all of ``hw``.

``Param`` declares one parameter (type, default, allowed values) and derives its JSON
schema and its check; ``check_params`` checks a set of them by name; ``check_int`` is
the check of a single integer. Every refusal is
``ValueError("name: value is not allowed, must be <allowed>")``, naming the field and
what it allows (``lo..hi``, ``>= lo``, ``one of ...``, ``a power of two lo..hi``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Param:
    """One parameter of a tile kind: its type, default and allowed values.

    ``type`` is ``"integer"``, ``"number"``, ``"string"`` or ``"boolean"``;
    integers and numbers take ``lo``/``hi`` (inclusive), strings ``choices``.
    """
    name: str
    default: object
    type: str = "integer"
    lo: float | None = None
    hi: float | None = None
    choices: tuple | None = None
    doc: str = ""

    def allowed(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        if self.type == "boolean":
            return "true or false"
        if self.lo is not None and self.hi is not None:
            return f"{self.lo:g}..{self.hi:g}" if self.type == "number" else \
                f"{self.lo}..{self.hi}"
        if self.lo is not None:
            return f">= {self.lo}"
        if self.hi is not None:
            return f"<= {self.hi}"
        return f"a {self.type}"

    def check(self, value):
        """The value if allowed, else ``ValueError`` naming the field and what is allowed."""
        ok = True
        if self.type == "integer":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.type == "number":
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                  and math.isfinite(value))
        elif self.type == "string":
            ok = isinstance(value, str)
        elif self.type == "boolean":
            ok = isinstance(value, bool)
        if ok and self.choices is not None:
            ok = value in self.choices
        if ok and self.lo is not None:
            ok = value >= self.lo
        if ok and self.hi is not None:
            ok = value <= self.hi
        if not ok:
            raise ValueError(f"{self.name}: {value!r} is not allowed, must be "
                             f"{self.allowed()}")
        return value

    def schema(self) -> dict:
        """This parameter as a JSON-schema property."""
        out = {"type": self.type, "default": self.default}
        if self.lo is not None:
            out["minimum"] = self.lo
        if self.hi is not None:
            out["maximum"] = self.hi
        if self.choices is not None:
            out["enum"] = list(self.choices)
        if self.doc:
            out["description"] = self.doc
        return out


def check_params(params: tuple, values: dict, owner: str = "tile") -> dict:
    """All of ``params`` with defaults filled and every value checked; unknown names refused."""
    names = {p.name for p in params}
    extra = sorted(set(values) - names, key=str)
    if extra:
        raise ValueError(f"{extra[0]}: unknown {owner} parameter, allowed: "
                         f"{', '.join(p.name for p in params)}")
    return {p.name: p.check(values.get(p.name, p.default)) for p in params}


def check_int(name: str, value, lo: int, hi: int | None = None, *,
              power_of_two: bool = False) -> int:
    """An integer in ``lo..hi`` (no upper bound if ``hi`` is None), a power of two if
    asked, else ``ValueError("name: value is not allowed, must be lo..hi")``."""
    param = Param(name, None, "integer", lo, hi)
    if not power_of_two:
        return param.check(value)
    try:
        ok = not param.check(value) & (value - 1)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{name}: {value!r} is not allowed, must be a power of two "
                         f"{param.allowed()}")
    return value
