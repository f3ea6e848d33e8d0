"""Name -> object registries for spaces, controllers and evaluators.

Built-in entries live in the packages named by each registry (``search_spaces``, ``controllers``,
``nas.evaluate``) and are imported the first time a registry is read, so registering costs nothing
at import time. A name of the form ``"package.module:attribute"`` is imported instead of looked up,
so users can point a config at their own code without registering it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from nas.errors import UnknownNameError, UsageError

__all__ = [
    "Registry",
    "SPACES",
    "CONTROLLERS",
    "EVALUATORS",
    "register_space",
    "register_controller",
    "register_evaluator",
    "import_object",
]

T = TypeVar("T")


def import_object(path: str, *, kind: str = "object") -> Any:
    """Import ``"package.module:attribute"`` (attribute may be dotted)."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"{kind} {path!r}: expected 'package.module:attribute'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"{kind} {path!r}: cannot import module {module_name!r} ({exc})") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"{kind} {path!r}: module {module_name!r} has no {attr!r}") from None
    return obj


class Registry:
    """A plain decorator registry.

    Args:
        kind: what is registered ("space", "controller", ...), used in error messages.
        builtin_modules: modules imported on first lookup, whose decorators fill the registry.
    """

    def __init__(self, kind: str, builtin_modules: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self._builtin_modules = builtin_modules
        self._loaded = False
        self._entries: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering its target under ``name`` (a second, different target raises)."""
        if not isinstance(name, str) or not name or ":" in name:
            raise UsageError(
                f"{self.kind} name must be a non-empty string without ':', got {name!r}"
            )

        def decorator(obj: T) -> T:
            old = self._entries.get(name)
            if old is not None and old is not obj and _qualname(old) != _qualname(obj):
                raise UsageError(f"{self.kind} {name!r} is already registered to {_qualname(old)}")
            self._entries[name] = obj
            if isinstance(obj, type) and getattr(obj, "name", None) in (
                None,
                "space",
                "controller",
            ):
                obj.name = name  # type: ignore[attr-defined]
            return obj

        return decorator

    def _load_builtins(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self._builtin_modules:
                importlib.import_module(module)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._load_builtins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_builtins()
        return name in self._entries

    def get(self, name: str) -> Any:
        """The registered object, or the object a ``"module:attr"`` path points to."""
        if isinstance(name, str) and ":" in name:
            return import_object(name, kind=self.kind)
        self._load_builtins()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._entries))} "
                "(or 'package.module:attribute')"
            ) from None

    def create(self, name: str, **options: Any) -> Any:
        """Look up ``name`` and call it with ``options``."""
        factory = self.get(name)
        try:
            inspect.signature(factory).bind(**options)
        except TypeError as exc:
            raise UsageError(
                f"{self.kind} {name!r}: bad options {sorted(options)}: {exc}"
            ) from None
        except ValueError:  # no signature available (builtins): let the call decide
            pass
        return factory(**options)


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


SPACES = Registry("space", ("search_spaces",))
CONTROLLERS = Registry("controller", ("controllers",))
EVALUATORS = Registry("evaluator", ("nas.evaluate",))

register_space = SPACES.register
register_controller = CONTROLLERS.register
register_evaluator = EVALUATORS.register
