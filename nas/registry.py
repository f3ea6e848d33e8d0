"""Name -> object registries for spaces, controllers and evaluators.

Built-in entries live in the packages named by each registry (``search_spaces``, ``controllers``,
``nas.evaluation.evaluate``) and are imported the first time a registry is read, so registering
costs nothing
at import time. A name of the form ``"package.module:attribute"`` is imported instead of looked up,
so users can point a config at their own code without registering it.

Names come from files (configs, run folders, architecture cards), so nothing a name points to is
called before its kind is checked: a space must be a :class:`nas.Space` subclass, a controller a
:class:`nas.search.controller.Controller` subclass, an evaluator a Python function marked with
:func:`evaluator` (or registered). ``"os:system"``, ``"subprocess:getoutput"`` or
``"builtins:exec"`` are refused with a :class:`UsageError` naming what was found; importing the
module is the only thing that happens (``os`` and the like run no code of the file's choosing).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, TypeVar

from nas.errors import (
    RefusedNameError,
    UnknownNameError,
    UnknownOptionError,
    UsageError,
    did_you_mean,
)

__all__ = [
    "Registry",
    "SPACES",
    "CONTROLLERS",
    "EVALUATORS",
    "register_space",
    "register_controller",
    "register_evaluator",
    "import_object",
    "get_space",
    "get_controller",
    "evaluator",
    "evaluator_options",
    "did_you_mean",
]

if TYPE_CHECKING:
    from nas.search.controller import Controller
    from nas.space import Space

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


_EVALUATOR_MARK = "__nas_evaluator_options__"


def evaluator(fn: Callable[..., Any] | None = None, *,
              options: Collection[str] = ()) -> Any:
    """Mark a function as an evaluator ``fn(arch, model, ctx) -> dict``.

    Only marked (or registered) functions can be named as ``evaluator.name: pkg.mod:fn``.
    ``options`` lists the keys of ``evaluator.options`` it takes; any other key is refused
    before a search starts. Use as ``@evaluator`` or ``@evaluator(options=("seconds",))``.
    """

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        if not inspect.isfunction(f):
            raise UsageError(f"@evaluator: {f!r} is not a Python function")
        setattr(f, _EVALUATOR_MARK, tuple(sorted(options)))
        return f

    return mark(fn) if fn is not None else mark


def evaluator_options(fn: Any) -> tuple[str, ...] | None:
    """The option keys an evaluator declared (None: not a marked evaluator)."""
    return getattr(fn, _EVALUATOR_MARK, None) if inspect.isfunction(fn) else None


def _is_subclass(base: str) -> Callable[[Any], bool]:
    def check(obj: Any) -> bool:
        if base == "space":
            from nas.space import Space as cls
        else:
            from nas.search.controller import Controller as cls
        return isinstance(obj, type) and issubclass(obj, cls) and obj is not cls

    return check


def _found(obj: Any) -> str:
    if isinstance(obj, type):
        return f"the class {_qualname(obj)}"
    if inspect.isbuiltin(obj):
        return f"the built-in {getattr(obj, '__qualname__', obj)!r}"
    if inspect.isfunction(obj):
        return f"the function {_qualname(obj)}"
    if inspect.ismodule(obj):
        return f"the module {obj.__name__!r}"
    return f"a {type(obj).__name__}"


class Registry:
    """A decorator registry whose entries (and imported ``module:attr`` objects) are kind-checked.

    Args:
        kind: what is registered ("space", "controller", ...), used in error messages.
        builtin_modules: modules imported on first lookup, whose decorators fill the registry.
        accepts: the kind check (None: anything); ``expected`` says in words what it accepts.
    """

    def __init__(self, kind: str, builtin_modules: tuple[str, ...] = (),
                 accepts: Callable[[Any], bool] | None = None, expected: str = "") -> None:
        self.kind = kind
        self._builtin_modules = builtin_modules
        self._accepts = accepts
        self.expected = expected
        self._loaded = False
        self._entries: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering its target under ``name`` (a second, different target raises)."""
        if not isinstance(name, str) or not name or ":" in name:
            raise UsageError(
                f"{self.kind} name must be a non-empty string without ':', got {name!r}"
            )

        def decorator(obj: T) -> T:
            if self.kind == "evaluator" and evaluator_options(obj) is None:
                evaluator(obj)  # registering marks it (no options)
            self._check_kind(name, obj)
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

    def _check_kind(self, name: str, obj: Any) -> None:
        if self._accepts is not None and not self._accepts(obj):
            raise RefusedNameError(f"{self.kind} {name!r}: expected {self.expected}, found "
                             f"{_found(obj)}; refusing to use it")

    def get(self, name: str) -> Any:
        """The registered object, or the kind-checked object a ``"module:attr"`` path names."""
        if isinstance(name, str) and ":" in name:
            obj = import_object(name, kind=self.kind)
            self._check_kind(name, obj)
            return obj
        self._load_builtins()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, self._entries)}; known: "
                f"{', '.join(sorted(self._entries))} (or 'package.module:attribute')"
            ) from None

    def create(self, name: str, /, **options: Any) -> Any:
        """Look up ``name`` and call it with ``options``."""
        factory = self.get(name)
        params = inspect.signature(factory).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        named = [k for k, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
                 and k != "self"]
        for key in options:
            if key not in named and not takes_any:
                shown = [k for k in named if k not in ("space", "seed")]
                raise UnknownOptionError(
                    f"{self.kind} {name!r}", key,
                    f"not an option of {self.kind} {name!r}{did_you_mean(key, shown)}; it takes: "
                    f"{', '.join(shown) or 'no options'}")
        try:
            inspect.signature(factory).bind(**options)
        except TypeError as exc:
            raise UsageError(f"{self.kind} {name!r}: bad options {sorted(options)}: {exc}"
                             ) from None
        return factory(**options)


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


SPACES = Registry("space", ("search_spaces",), _is_subclass("space"), "a nas.Space subclass")
CONTROLLERS = Registry("controller", ("controllers",), _is_subclass("controller"),
                       "a nas.search.controller.Controller subclass")
EVALUATORS = Registry("evaluator", ("nas.evaluation.evaluate", "nas.supernet.evaluator"),
                      lambda f: evaluator_options(f) is not None,
                      "a function marked with @nas.evaluator")

register_space = SPACES.register
register_controller = CONTROLLERS.register
register_evaluator = EVALUATORS.register


def get_space(name: str, /, **options: Any) -> Space:
    """Create a registered space (or ``"package.module:Class"``) with its options."""
    return SPACES.create(name, **options)


def get_controller(name: str, /, space: Space, *, seed: int | None = None,
                   **options: Any) -> Controller:
    """Create a registered controller (or ``"package.module:Class"``) over ``space``."""
    return CONTROLLERS.create(name, space=space, seed=seed, **options)
