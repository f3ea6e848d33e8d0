"""Name -> object registries for spaces, controllers and evaluators.

Built-in entries live in the packages named by each registry (``search_spaces``, ``controllers``,
``nas.evaluation.evaluate``) and are imported the first time a registry is read, so registering
costs nothing at import time. Installed packages add entries through entry points (groups
``mnas.spaces``, ``mnas.controllers``, ``mnas.evaluators``), loaded when their name is asked for;
user code adds them with the ``register_*`` decorators.

A name of the form ``"package.module:attribute"`` is imported instead of looked up, so users can
point a config at their own code without registering it. Importing a module runs its top-level
code, and the module is the name's choice, so where the name comes from decides:

- typed by the user (the command line, the config they run, a call in their own code): imported;
- read from a file mnas did not just get from the user (a run folder, an architecture card, a
  weights file): refused with one line, unless the user says they trust it (``--trust-code``,
  ``trust_code=True``); readers mark such names with :func:`names_from`.

Either way the name must be dotted identifiers (no relative or ``__main__`` modules), and nothing
it points to is called before its kind is checked: a space must be a :class:`nas.Space`
subclass, a controller a :class:`nas.search.controller.Controller` subclass, an evaluator a
Python function marked with :func:`evaluator` (or registered).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import sys
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from nas.errors import (
    RefusedNameError,
    UnknownNameError,
    UnknownOptionError,
    UntrustedNameError,
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
    "names_from",
    "code_names",
    "own_module",
    "untrusted_error",
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


_SOURCE: ContextVar[tuple[str, bool] | None] = ContextVar("mnas_name_source", default=None)


@contextmanager
def names_from(source: str | Path, *, trust_code: bool = False) -> Iterator[None]:
    """Names resolved inside the block were read from the file ``source``.

    A ``"package.module:attribute"`` name is then refused (:class:`UntrustedNameError`, naming
    ``source``) unless ``trust_code``; registered names work as everywhere.
    """
    token = _SOURCE.set((str(source), bool(trust_code)))
    try:
        yield
    finally:
        _SOURCE.reset(token)


OWN_PACKAGES = ("nas", "search_spaces", "controllers")


def own_module(module_name: str) -> bool:
    """Whether ``module_name`` lies in mnas's own packages: importing it runs only mnas's code,
    which is running already (its ``__main__`` modules are refused anyway)."""
    return module_name.split(".")[0] in OWN_PACKAGES


def code_names(config: Mapping[str, Any]) -> list[str]:
    """The names of plain config data's ``space``, ``controller`` and ``evaluator`` that would
    import code from outside mnas (``package.module:attr``), as ``"space.name 'pkg.mod:S'"``;
    a run folder holding one resumes only with ``trust_code``."""
    found = []
    for section in ("space", "controller", "evaluator"):
        part = config.get(section)
        name = part.get("name") if isinstance(part, Mapping) else None
        if isinstance(name, str) and ":" in name and not own_module(name.partition(":")[0]):
            found.append(f"{section}.name {name!r}")
    return found


def untrusted_error(names: list[str], source: str | Path) -> UntrustedNameError:
    """The refusal of the ``module:attr`` ``names`` a file ``source`` holds (one line); each
    name is shown as given (e.g. ``"space.name 'pkg.mod:Space'"``)."""
    shown = ", ".join(names)
    return UntrustedNameError(
        f"{shown} in {source}: a 'module:attribute' name read from a file is not imported "
        "(importing runs that module's code); pass trust_code=True if you trust the file, or "
        "register the object under a name", params=("trust_code",))


def _check_path(path: str, kind: str) -> tuple[str, str]:
    """``(module, attribute)`` of a well-formed name, else a one-line UsageError."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"{kind} {path!r}: expected 'package.module:attribute'")
    if not all(part.isidentifier() for part in module_name.split(".")):
        raise UsageError(f"{kind} {path!r}: the module must be an absolute dotted name "
                         "(no relative '.module', no spaces)")
    if "__main__" in module_name.split("."):
        raise RefusedNameError(f"{kind} {path!r}: a __main__ module runs a program when "
                               "imported; refusing to import it")
    if not all(part.isidentifier() for part in attr.split(".")):
        raise UsageError(f"{kind} {path!r}: the attribute must be a dotted name")
    source = _SOURCE.get()
    if source is not None and not source[1] and not own_module(module_name):
        raise untrusted_error([f"{kind} {path!r}"], source[0])
    return module_name, attr


def import_object(path: str, *, kind: str = "object") -> Any:
    """Import ``"package.module:attribute"`` (attribute may be dotted).

    Inside :func:`names_from` without ``trust_code`` it is refused before anything is imported.
    """
    module_name, attr = _check_path(path, kind)
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
                 accepts: Callable[[Any], bool] | None = None, expected: str = "",
                 group: str | None = None) -> None:
        self.kind = kind
        self._builtin_modules = builtin_modules
        self._accepts = accepts
        self.expected = expected
        self.group = group
        self._loaded = False
        self._entries: dict[str, Any] = {}
        self._scanned: tuple[tuple[str, ...], dict[str, Any]] | None = None

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

    def _entry_points(self) -> dict[str, importlib.metadata.EntryPoint]:
        """Installed packages' entry points of this registry's group, by name (not loaded)."""
        if self.group is None:
            return {}
        key = tuple(sys.path)  # scanned again when the import path changes
        if self._scanned is None or self._scanned[0] != key:
            found = {ep.name: ep for ep in importlib.metadata.entry_points(group=self.group)}
            self._scanned = (key, found)
        return self._scanned[1]

    def _load_entry_point(self, name: str) -> bool:
        """Register the installed entry point ``name`` (its package is trusted: the user
        installed it); False when there is none."""
        ep = self._entry_points().get(name)
        if ep is None or ":" in name:
            return False
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plug-in: one line naming it
            raise UsageError(f"{self.kind} {name!r}: entry point {ep.value!r} of "
                             f"{self.group!r} cannot be loaded ({type(exc).__name__}: {exc})"
                             ) from None
        self.register(name)(obj)
        return True

    def names(self) -> list[str]:
        """Registered names and installed entry points, sorted."""
        self._load_builtins()
        return sorted({*self._entries, *self._entry_points()})

    def __contains__(self, name: object) -> bool:
        self._load_builtins()
        return name in self._entries or (isinstance(name, str) and name in self._entry_points())

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
        if isinstance(name, str) and name not in self._entries:
            self._load_entry_point(name)
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            known = self.names()
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, known)}; known: "
                f"{', '.join(known)} (or 'package.module:attribute')"
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


SPACES = Registry("space", ("search_spaces",), _is_subclass("space"), "a nas.Space subclass",
                  group="mnas.spaces")
CONTROLLERS = Registry("controller", ("controllers",), _is_subclass("controller"),
                       "a nas.search.controller.Controller subclass", group="mnas.controllers")
EVALUATORS = Registry("evaluator", ("nas.evaluation.evaluate", "nas.supernet.evaluator",
                                     "nas.evaluation.zero_cost_evaluator"),
                      lambda f: evaluator_options(f) is not None,
                      "a function marked with @nas.evaluator", group="mnas.evaluators")

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
