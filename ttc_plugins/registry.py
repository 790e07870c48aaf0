"""Named component registries filled by the ``ttc_register_*`` hooks.

A component is a class with a unique ``name`` and a pydantic ``Params`` model; requests refer to
it by name and pass JSON arguments that ``Params`` validates. Components are never deserialized
from a request: only names and JSON travel.
"""

from __future__ import annotations

from typing import Generic, Iterator, TypeVar

from pydantic import BaseModel

from .errors import PluginLoadError

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Components of one kind ("control", "decoder", "scorer", "search strategy") by name."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, component: T) -> None:
        name = getattr(component, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginLoadError(f"{self.kind} {component!r} has no string `name` attribute")
        params = getattr(component, "Params", None)
        if not (isinstance(params, type) and issubclass(params, BaseModel)):
            raise PluginLoadError(f"{self.kind} {name!r} needs a pydantic `Params` model class")
        known = self._items.get(name)
        if known is not None and known is not component:
            raise PluginLoadError(
                f"two {self.kind}s are named {name!r}: {known.__module__}.{known.__qualname__} and "
                f"{component.__module__}.{component.__qualname__}; rename one or block its plugin"
            )
        self._items[name] = component

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names()) or 'none'}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(self._items[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._items)
