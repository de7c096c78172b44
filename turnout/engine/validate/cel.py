"""Evaluating a CRD's `x-kubernetes-validations` rules with cel-python (`celpy`).

```
CELRule(rule, message, reason) --compile once per (CRD, rule)--> celpy program (cached)
instance + its schema --to_cel()--> celpy value (property names escaped, e.g. __namespace__)
program.evaluate({"self": value}) --> True | False | evaluation error
```

Kubernetes CEL differs from plain CEL in ways the Gateway API rules rely on, handled here:

- Property names that are CEL reserved words are escaped as ``__name__`` (``namespace`` ->
  ``__namespace__``), and ``__``, ``.``, ``-``, ``/`` inside names are escaped as
  ``__underscores__``, ``__dot__``, ``__dash__``, ``__slash__``. Keys of maps
  (`additionalProperties`, e.g. labels) are not escaped.
- Kubernetes library functions that celpy lacks are bound as functions: ``isIP``, string
  ``split`` and ``substring`` (the Gateway API CRDs use no other extension functions).
- Transition rules (those naming ``oldSelf``) run only on update; a file is always a create,
  so they are skipped, as the API server skips them on create.

A rule that celpy cannot compile, or that fails for a reason other than the data (an
unknown function, a missing overload), is `Unsupported`: the caller reports it once as a
`CELUnsupported` warning. This module never raises for a rule.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import celpy
from celpy import celtypes
from celpy.evaluation import CELFunction

log = logging.getLogger(__name__)

CEL_RESERVED = frozenset(
    {
        "true", "false", "null", "in", "as", "break", "const", "continue", "else", "for",
        "function", "if", "import", "let", "loop", "package", "namespace", "return", "var",
        "void", "while",
    }
)  # fmt: skip
_UNSUPPORTED_HINTS = (
    "undeclared reference",
    "no such overload",
    "no matching overload",
    "unsupported",
    "not implemented",
)


@dataclass(frozen=True, slots=True)
class CELRule:
    """One entry of `x-kubernetes-validations`."""

    rule: str
    message: str
    reason: str | None = None
    """The rule's own `reason` (e.g. FieldValueForbidden) when the CRD sets one."""

    @property
    def is_transition(self) -> bool:
        return re.search(r"\boldSelf\b", self.rule) is not None


@dataclass(frozen=True, slots=True)
class Unsupported:
    """Why a rule could not be compiled or evaluated by celpy."""

    detail: str


@dataclass(frozen=True, slots=True)
class Failed:
    """The data made the rule fail to evaluate (e.g. a field the rule reads is absent)."""

    detail: str


Outcome = bool | Unsupported | Failed
"""True: the rule holds; False: it is violated."""


def escape_name(name: str) -> str:
    """Kubernetes' escaping of a property name for CEL."""
    if name in CEL_RESERVED:
        return f"__{name}__"
    escaped = (
        name.replace("__", "__underscores__")
        .replace(".", "__dot__")
        .replace("-", "__dash__")
        .replace("/", "__slash__")
    )
    return escaped


def to_cel(value: object, schema: Mapping[str, object]) -> celtypes.Value:
    """A JSON value as a celpy value, escaping the names of declared properties."""
    if isinstance(value, Mapping):
        props = schema.get("properties")
        props = props if isinstance(props, Mapping) else {}
        extra = schema.get("additionalProperties")
        extra = extra if isinstance(extra, Mapping) else {}
        out: dict[celtypes.Value, celtypes.Value] = {}
        for k, v in value.items():
            key = str(k)
            sub = props.get(key)
            if isinstance(sub, Mapping):
                out[celtypes.StringType(escape_name(key))] = to_cel(v, sub)
            else:
                out[celtypes.StringType(key)] = to_cel(v, extra)
        return celtypes.MapType(out)
    if isinstance(value, list):
        items = schema.get("items")
        items = items if isinstance(items, Mapping) else {}
        return celtypes.ListType([to_cel(v, items) for v in value])
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, int):
        return celtypes.IntType(value)
    if isinstance(value, float):
        return celtypes.DoubleType(value)
    if isinstance(value, str):
        return celtypes.StringType(value)
    return None


# --------------------------------------------------------------------------- k8s library


def _is_ip(value: object) -> celtypes.BoolType:
    text = str(value)
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return celtypes.BoolType(False)
    return celtypes.BoolType("%" not in text)


def _split(value: object, sep: object, limit: object = None) -> celtypes.ListType:
    text, by = str(value), str(sep)
    n = int(limit) if isinstance(limit, int) else -1
    if n == 0:
        return celtypes.ListType([])
    parts = text.split(by, n - 1) if n > 0 else text.split(by)
    return celtypes.ListType([celtypes.StringType(p) for p in parts])


def _substring(value: object, start: object, end: object = None) -> celtypes.StringType:
    text = str(value)
    stop = len(text) if end is None else int(str(end))
    return celtypes.StringType(text[int(str(start)) : stop])


K8S_FUNCTIONS: dict[str, CELFunction] = {
    "isIP": _is_ip,
    "split": _split,
    "substring": _substring,
}
"""Kubernetes CEL library functions bound into every program."""


@dataclass
class CELEngine:
    """Compiles rules once per (CRD, rule) and evaluates them."""

    env: celpy.Environment = field(default_factory=celpy.Environment)
    programs: dict[tuple[str, str], object] = field(default_factory=dict)
    """(CRD name, rule text) -> celpy Runner, or `Unsupported`."""

    def program(self, crd: str, rule: str) -> object:
        key = (crd, rule)
        if key not in self.programs:
            try:
                ast = self.env.compile(rule)
                self.programs[key] = self.env.program(ast, functions=K8S_FUNCTIONS)
            except Exception as exc:  # celpy raises its own and lark exceptions
                log.warning("cel rule does not compile crd=%s error=%s", crd, exc)
                self.programs[key] = Unsupported(f"does not compile: {_short(exc)}")
        return self.programs[key]

    def evaluate(self, crd: str, rule: CELRule, value: celtypes.Value) -> Outcome:
        """Run `rule` with `self` bound to `value` (already converted by `to_cel`)."""
        prog = self.program(crd, rule.rule)
        if isinstance(prog, Unsupported):
            return prog
        try:
            result = prog.evaluate({"self": value})  # type: ignore[attr-defined]
        except Exception as exc:  # CELEvalError and anything celpy lets through
            return _classify(exc)
        if isinstance(result, celtypes.BoolType | bool):
            return bool(result)
        return Unsupported(f"rule returned {type(result).__name__}, not a bool")


def _short(exc: BaseException) -> str:
    text = str(exc.args[0]) if exc.args else str(exc)
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _classify(exc: BaseException) -> Outcome:
    text = _short(exc)
    if "CELEvalError" in text or "no such member" in text or "no such key" in text:
        return Failed(text)  # an error from the data, carried through an operator
    if any(h in text.lower() for h in _UNSUPPORTED_HINTS):
        return Unsupported(text)
    return Failed(text)
