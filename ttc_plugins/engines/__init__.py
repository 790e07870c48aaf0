"""Which engines are installed, and whether this release supports their versions.

One place for version checks (the backends call :func:`require_supported` at start, before
touching any engine internals). The supported releases are data, one file per engine beside this
module (``vllm.toml``, ``sglang.toml``), read here, by the drift guards, by nox's per-version
sessions and by the docs table. The supported range of an engine runs from its oldest to its newest
release marked ``tested``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from importlib.resources import files

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from ..errors import UnsupportedEngineError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ENGINES = ("vllm", "sglang")
STATUSES = ("tested", "untested", "dropped")


@dataclass(frozen=True)
class Release:
    version: str
    status: str  # one of STATUSES
    reason: str = ""


@dataclass(frozen=True)
class EngineReleases:
    """One engine's data file: the distributions that provide it and its releases, newest first."""

    engine: str
    distributions: tuple[str, ...]
    releases: tuple[Release, ...]

    @property
    def tested(self) -> tuple[str, ...]:
        return tuple(r.version for r in self.releases if r.status == "tested")

    @property
    def range_text(self) -> str:
        """The supported range as people read it (oldest bound first), e.g. ``>=0.27.1,<=0.32.0``."""
        tested = sorted(Version(v) for v in self.tested)
        return f">={tested[0]},<={tested[-1]}"

    @property
    def supported(self) -> SpecifierSet:
        return SpecifierSet(self.range_text)


@cache
def releases(engine: str) -> EngineReleases:
    """The data file of ``engine`` (``vllm`` or ``sglang``), checked."""
    data = tomllib.loads(files(__name__).joinpath(f"{engine}.toml").read_text())
    rels = tuple(Release(r["version"], r["status"], r.get("reason", "")) for r in data["releases"])
    for r in rels:
        if r.status not in STATUSES:
            raise ValueError(f"{engine}.toml: release {r.version}: status {r.status!r} not in {STATUSES}")
        if r.status != "tested" and not r.reason:
            raise ValueError(f"{engine}.toml: release {r.version} is {r.status}: say why (reason = ...)")
    if [Version(r.version) for r in rels] != sorted((Version(r.version) for r in rels), reverse=True):
        raise ValueError(f"{engine}.toml: list releases newest first")
    if not any(r.status == "tested" for r in rels):
        raise ValueError(f"{engine}.toml: no tested release")
    return EngineReleases(data["engine"], tuple(data["distributions"]), rels)


# engine -> (distributions that provide it, supported versions), and the versions the integration
# suites ran against; both derived from the data files.
SUPPORTED: dict[str, tuple[tuple[str, ...], SpecifierSet]] = {
    e: (releases(e).distributions, releases(e).supported) for e in ENGINES
}
TESTED: dict[str, tuple[str, ...]] = {e: releases(e).tested for e in ENGINES}


@dataclass(frozen=True)
class EngineInfo:
    name: str
    distribution: str | None
    version: str | None
    supported: bool | None
    supported_range: str


def _installed(dists: tuple[str, ...]) -> tuple[str | None, str | None]:
    for dist in dists:
        try:
            return dist, version(dist)
        except PackageNotFoundError:
            continue
    return None, None


def is_supported(engine: str, engine_version: str) -> bool:
    spec = SUPPORTED[engine][1]
    try:
        v = Version(engine_version)
    except InvalidVersion:
        return False
    return Version(v.base_version) in spec


def detect_engines() -> list[EngineInfo]:
    """Every known engine, installed or not."""
    out = []
    for name, (dists, _spec) in SUPPORTED.items():
        dist, ver = _installed(dists)
        out.append(EngineInfo(name, dist, ver, None if ver is None else is_supported(name, ver),
                              releases(name).range_text))
    return out


def require_supported(engine: str, engine_version: str) -> None:
    """Refuse to start on an engine version outside the supported range, saying which it is."""
    if not is_supported(engine, engine_version):
        raise UnsupportedEngineError(
            f"ttc-plugins does not support {engine} {engine_version}; supported: {engine} {releases(engine).range_text} "
            f"(tested: {', '.join(TESTED[engine])}). Install a supported {engine} or a matching ttc-plugins."
        )


def releases_table() -> str:
    """The docs' table of engine releases (docs/engines.md holds it verbatim; a test keeps them equal)."""
    lines = ["| engine | release | status | note |", "|---|---|---|---|"]
    for engine in ENGINES:
        data = releases(engine)
        for r in data.releases:
            lines.append(f"| {engine} | {r.version} | {r.status} | {r.reason} |")
    return "\n".join(lines)
