"""Component registries: one per kind, filled by built-ins, entry points and plugin files.

A component is registered under ``(kind, name)``. Three sources feed the registries:

* built-ins, which register with ``@register(kind, name)`` when ``emo_lightning.components`` is imported;
* installed packages, through entry points in the ``emo_lightning.plugins`` group. An entry point is
  named ``<kind>.<name>`` and points at the component (``module:Object``); it is imported only when the
  component is first asked for (lazy, like fsspec's ``known_implementations``);
* plugin files: ``*.py`` modules or packages in ``./plugins``, in the directories listed in
  ``$EMO_PLUGIN_PATH`` (``os.pathsep``-separated) or passed to :func:`load_plugin_paths` (the config's
  ``plugins`` list). They register with the same decorator when imported.

The kinds are declared once, in :mod:`emo_lightning.components.kinds`; :data:`KINDS` is that table (read on first
use, since the table imports the interfaces, which import this module).

``build(kind, spec, **derived)`` instantiates a component from its config (a registered name, or a mapping of
its ``name`` and keyword arguments) and checks it against its kind's interface (see
:mod:`emo_lightning.components.base`), so a plugin that breaks the contract fails at build time with a message
that names it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emo_lightning.components.kinds import Kind

ENTRY_POINT_GROUP = "emo_lightning.plugins"
PLUGIN_PATH_ENV = "EMO_PLUGIN_PATH"

Spec = str | Mapping[str, Any]
"""A component as configs name it: its registered name (``"mel"``), or a mapping of its ``name`` and keyword
arguments (``{"name": "wav2vec2", "pretrained": "facebook/wav2vec2-base-960h"}``)."""


class RegistryError(LookupError):
    """A component could not be found, imported or built."""


class SpecError(RegistryError, ValueError):
    """A component's config is malformed: not a name or a mapping with a ``name``, or it sets a derived argument."""


class PluginContractError(TypeError):
    """A component does not honour its kind's interface."""


def kinds() -> dict[str, Kind]:
    """The component kinds, by name, in the order ``emo plugins`` lists them (:mod:`emo_lightning.components.kinds`)."""
    from emo_lightning.components.kinds import KINDS as table

    return table


def __getattr__(name: str) -> Any:
    if name == "KINDS":  # the kinds table, imported on first use (it imports the interfaces, which import us)
        return kinds()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class Entry:
    """One registered component, possibly not imported yet."""

    kind: str
    name: str
    source: str  # "built-in", "entry point <dist>", or "file <path>"
    target: Any = None  # the class/factory once loaded
    loader: Callable[[], Any] | None = None  # lazily imports the target
    error: str | None = None  # why loading failed, once tried
    tiny: dict[str, Any] | None = None  # keyword arguments of a tiny instance, for tests

    def tiny_config(self) -> dict[str, Any]:
        """Arguments for a tiny, randomly initialised instance: from ``register(..., tiny=)`` or the
        component's ``tiny_config()`` classmethod; ``{}`` when it declares none."""
        target = self.load()
        if self.tiny is not None:
            return dict(self.tiny)
        return dict(target.tiny_config()) if hasattr(target, "tiny_config") else {}

    def load(self) -> Any:
        if self.target is None and self.loader is not None:
            try:
                self.target = self.loader()
            except Exception as exc:  # any import-time failure of third-party code
                self.error = f"{type(exc).__name__}: {exc}"
                raise RegistryError(
                    f"{self.kind} component {self.name!r} ({self.source}) failed to import: {self.error}"
                ) from exc
        return self.target


@dataclass
class _State:
    entries: dict[str, dict[str, Entry]] = field(default_factory=dict)  # kind -> name -> entry
    builtins_loaded: bool = False
    entry_points_loaded: bool = False
    loaded_paths: set[str] = field(default_factory=set)
    current_source: str = "built-in"


_state = _State()


def _check_kind(kind: str) -> None:
    if kind not in kinds():
        raise RegistryError(f"unknown component kind {kind!r}; kinds are: {', '.join(kinds())}")


def _registered(kind: str) -> dict[str, Entry]:
    return _state.entries.setdefault(kind, {})


def register(kind: str, name: str, tiny: dict[str, Any] | None = None) -> Callable[[Any], Any]:
    """Decorator registering a class (or factory) as component ``name`` of ``kind``.

    ``tiny``: keyword arguments that build a tiny instance (the contract tests use them).
    """
    _check_kind(kind)

    def decorator(target: Any) -> Any:
        _registered(kind)[name] = Entry(kind, name, _state.current_source, target=target, tiny=tiny)
        return target

    return decorator


def _load_builtins() -> None:
    if not _state.builtins_loaded:
        _state.builtins_loaded = True
        importlib.import_module("emo_lightning.components")


def _load_entry_points() -> None:
    if _state.entry_points_loaded:
        return
    _state.entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        kind, _, name = ep.name.partition(".")
        dist = ep.dist.name if ep.dist is not None else "?"
        if kind not in kinds() or not name:
            print(f"emo-lightning: ignoring entry point {ep.name!r} from {dist}: name it <kind>.<name>",
                  file=sys.stderr)
            continue
        _registered(kind).setdefault(name, Entry(kind, name, f"entry point ({dist})", loader=ep.load))


def _plugin_modules(directory: Path) -> Iterable[Path]:
    for path in sorted(directory.iterdir()):
        if path.suffix == ".py" and not path.name.startswith("_"):
            yield path
        elif path.is_dir() and (path / "__init__.py").exists():
            yield path / "__init__.py"


def _import_file(path: Path) -> None:
    module_name = "emo_plugin_" + "_".join(path.with_suffix("").parts[-2:]).replace("-", "_").replace(".", "_")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise RegistryError(f"cannot import plugin file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    previous, _state.current_source = _state.current_source, f"file ({path})"
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise RegistryError(f"plugin file {path} failed to import: {type(exc).__name__}: {exc}") from exc
    finally:
        _state.current_source = previous


def load_plugin_paths(paths: Iterable[str | os.PathLike] = ()) -> None:
    """Import plugin modules from ``paths`` (files or directories), ``$EMO_PLUGIN_PATH`` and ``./plugins``."""
    candidates = [Path(p) for p in paths]
    candidates += [Path(p) for p in os.environ.get(PLUGIN_PATH_ENV, "").split(os.pathsep) if p]
    if Path("plugins").is_dir():
        candidates.append(Path("plugins"))
    for candidate in candidates:
        if not candidate.exists():
            raise RegistryError(f"plugin path {candidate} does not exist")
        files = _plugin_modules(candidate) if candidate.is_dir() else [candidate]
        for file in files:
            key = str(file.resolve())
            if key not in _state.loaded_paths:
                _state.loaded_paths.add(key)
                _import_file(file)


def discover(plugin_paths: Iterable[str | os.PathLike] = ()) -> None:
    """Make every source known: built-ins, entry points (not imported yet) and plugin files."""
    _load_builtins()
    _load_entry_points()
    load_plugin_paths(plugin_paths)


def entries(kind: str | None = None) -> list[Entry]:
    """All known entries (of one kind, or of every kind), sorted by kind then name."""
    discover()
    selected = [kind] if kind else list(kinds())
    for k in selected:
        _check_kind(k)
    return [_registered(k)[n] for k in selected for n in sorted(_registered(k))]


def entry(kind: str, name: str) -> Entry:
    """The registry entry of ``name`` of ``kind``; the error lists the names that exist."""
    _check_kind(kind)
    discover()
    found = _registered(kind).get(name)
    if found is None:
        known = ", ".join(sorted(_registered(kind))) or "(none)"
        raise RegistryError(
            f"unknown {kind} component {name!r}. Registered {kind} components: {known}. "
            f"Third-party components register through the {ENTRY_POINT_GROUP!r} entry-point group "
            f"or a module in ./plugins or ${PLUGIN_PATH_ENV}."
        )
    return found


def get(kind: str, name: str) -> Any:
    """The class or factory registered as ``name`` of ``kind`` (imported on first use)."""
    return entry(kind, name).load()


def parse_spec(spec: Spec, config_key: str | None = None) -> tuple[str, dict[str, Any]]:
    """``(name, keyword arguments)`` of a component's config; ``config_key`` (``model.vae``) names it in errors."""
    if isinstance(spec, str):
        name, kwargs = spec, {}
    elif isinstance(spec, Mapping):
        kwargs = dict(spec)
        name = kwargs.pop("name", None)
    else:
        name, kwargs = None, {}
    if not isinstance(name, str) or not name:
        raise SpecError(f"{config_key or 'a component config'} must be a registered name or a mapping with a "
                        f"`name` key, got {spec!r}")
    return name, kwargs


def build(kind: str, spec: Spec, /, *, config_key: str | None = None, **derived: Any) -> Any:
    """Instantiate the component of ``kind`` that ``spec`` names and check it honours the kind's interface.

    ``spec``: a registered name, or a mapping of its ``name`` and its own keyword arguments (a config entry).
    ``derived``: the arguments the caller computes (from the other components); the spec may not set them too.
    ``config_key`` (``model.vae``) names the config entry in the errors.
    """
    name, kwargs = parse_spec(spec, config_key)
    clash = sorted(set(kwargs) & set(derived))
    if clash:
        raise SpecError(f"{config_key or kind}: {clash} are derived from the other components; remove them")
    try:
        return _instantiate(kind, name, {**kwargs, **derived})
    except (RegistryError, PluginContractError) as exc:
        if config_key is None:
            raise
        raise type(exc)(f"{config_key}: {exc}") from exc


def _instantiate(kind: str, name: str, kwargs: dict[str, Any]) -> Any:
    target = get(kind, name)
    interface = kinds()[kind].interface
    try:
        component = target(**kwargs)
    except TypeError as exc:
        if "abstract" in str(exc):
            raise PluginContractError(
                f"{kind} component {name!r} does not implement the {interface.__name__} interface: {exc}"
            ) from exc
        raise RegistryError(f"cannot build {kind} component {name!r} with {sorted(kwargs)}: {exc}") from exc
    if not isinstance(component, interface):
        raise PluginContractError(
            f"{kind} component {name!r} built a {type(component).__name__}, "
            f"which is not a {interface.__module__}.{interface.__name__}"
        )
    try:
        interface.check_contract(component)
    except PluginContractError as exc:
        raise PluginContractError(f"{kind} component {name!r} breaks its interface: {exc}") from exc
    return component
