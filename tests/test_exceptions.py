"""Every exception Turnout defines pickles: a child process (`mesh proxy -f`'s compile,
`--workers`) hands them back through a process pool, and one that cannot be rebuilt there
turns a one-line error into a `BrokenProcessPool` traceback.

The classes are found by importing every module, so a new exception without an example
below fails `test_every_exception_class_has_an_example`.
"""

from __future__ import annotations

import importlib
import pickle
import pkgutil

import pytest

import turnout
from turnout.engine.diagnostics import Diagnostic, Severity, SourcePos


def all_exception_classes() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for info in pkgutil.walk_packages(turnout.__path__, prefix="turnout."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                found.append(value)
    return sorted(set(found), key=lambda c: f"{c.__module__}.{c.__qualname__}")


def qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


DIAG = Diagnostic(
    severity=Severity.ERROR,
    reason="FieldValueInvalid",
    message="must be 0..1000000, got -5",
    pos=SourcePos(file="routes.yaml", doc_index=2, path="spec.rules[0].backendRefs[1].weight"),
)


def example(cls: type[BaseException]) -> BaseException:
    """An instance built the way the code raises it."""
    name = qualname(cls)
    args: dict[str, tuple[object, ...]] = {
        "turnout.engine.errors.LoadError": ("invalid YAML",),
        "turnout.engine.errors.ValidationFailed": ((DIAG,),),
        "turnout.proxy.errors.TableError": ("Listener x", "filter_chains[0]", "bad"),
        "turnout.proxy.errors.ClientError": (400, "malformed body"),
        "turnout.proxy.errors.ListenError": ("outbound", "127.0.0.1", 4140, "address in use"),
        "turnout.proxy.errors.ShadowedRouteError": (3, "route 3 is shadowed by route 1"),
        "turnout.proxy.transport.refusals.Refused": (400, "more than one Host header"),
    }
    kwargs: dict[str, dict[str, object]] = {
        "turnout.engine.errors.LoadError": {"file": "routes.yaml", "doc_index": 1},
        "turnout.engine.errors.LimitExceeded": {"file": "bomb.yaml", "doc_index": 0},
        "turnout.engine.sources.k8s.api.KubernetesApiError": {"status": 429, "retry_after": 2.5},
    }
    if name in args or name in kwargs:
        return cls(*args.get(name, ("it failed",)), **kwargs.get(name, {}))
    from turnout.proxy.errors import UpstreamError

    if issubclass(cls, UpstreamError):
        return cls(("10.0.0.1", 8080), "connection refused")
    return cls("it failed")


CLASSES = all_exception_classes()


def test_every_exception_class_has_an_example() -> None:
    assert CLASSES, "no exception classes found"
    for cls in CLASSES:
        example(cls)  # raises TypeError when the table above lacks this class's arguments


@pytest.mark.parametrize("cls", CLASSES, ids=qualname)
def test_exception_survives_a_pickle_round_trip(cls: type[BaseException]) -> None:
    exc = example(cls)
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is cls
    assert str(back) == str(exc)
    assert vars(back) == vars(exc)
