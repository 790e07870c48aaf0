"""The on-disk cache: where it is, how an entry is built once and atomically, and how it is checked.

Every cache entry is a directory holding a manifest (``ttc-manifest.json``) that lists each file
with its size and sha256. An entry is built by :func:`build_once`:

* a :class:`filelock.FileLock` (``.<name>.lock`` beside the entry) serialises builders, so two
  processes never build the same entry at once (the second waits, then reuses the first's result);
* the builder writes into a temporary directory beside the target (``.<name>.tmp-*``), the
  manifest is written last, and the directory is renamed into place; a failure (or Ctrl-C) removes
  the temporary directory, and temporaries left by a killed process are removed by the next
  builder, so nothing half-written is ever left under the entry's name.

Readers check an entry with :func:`verify_entry` (sizes only, cheap; ``deep=True`` also hashes).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TTCError

ENV_CACHE_DIR = "TTC_CACHE_DIR"
MANIFEST_NAME = "ttc-manifest.json"
MANIFEST_FORMAT = 1
_TMP_MARK = ".tmp-"
_OLD_MARK = ".old-"


class ModelError(TTCError):
    """A model could not be located, downloaded, converted or built. The message says why."""


class ModelCacheError(ModelError):
    """A cache entry is missing, incomplete or does not match its manifest.

    ``path`` is the entry, ``fix`` the command that repairs it; both are in the message.
    """

    def __init__(self, path: Path, problem: str, fix: str | None = None):
        self.path = Path(path)
        self.problem = problem
        self.fix = fix
        msg = f"{problem} ({self.path})"
        if fix:
            msg += f"; fix: {fix}"
        super().__init__(msg)


def cache_root() -> Path:
    """The cache directory: ``$TTC_CACHE_DIR`` if set, else the platform's user cache dir."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_cache_dir("ttc-plugins"))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def describe_files(root: Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {"size", "sha256"}}`` for every file under ``root`` but the manifest."""
    root = Path(root)
    out: dict[str, dict[str, Any]] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST_NAME:
            out[p.relative_to(root).as_posix()] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    return out


def write_manifest(root: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Describe every file under ``root`` and write the manifest (fsynced) with ``meta`` merged in."""
    manifest = {"format": MANIFEST_FORMAT, **meta, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    manifest["files"] = describe_files(root)
    path = Path(root) / MANIFEST_NAME
    with open(path, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    return manifest


def read_manifest(root: Path, *, fix: str | None = None) -> dict[str, Any]:
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise ModelCacheError(root, f"cache entry has no manifest {MANIFEST_NAME}", fix)
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelCacheError(root, f"cache manifest is unreadable ({e})", fix) from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT or not isinstance(
        manifest.get("files"), dict
    ):
        raise ModelCacheError(root, "cache manifest has an unknown format", fix)
    return manifest


def verify_entry(
    root: Path,
    *,
    deep: bool = False,
    fix: str | None = None,
    expect: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Check an entry against its manifest and return the manifest.

    Checks that every listed file exists with its recorded size (and, with ``deep``, sha256), and
    that each ``expect`` key has that value in the manifest. Raises :class:`ModelCacheError`.
    """
    root = Path(root)
    if not root.is_dir():
        raise ModelCacheError(root, "cache entry is missing", fix)
    manifest = read_manifest(root, fix=fix)
    for key, want in (expect or {}).items():
        got = manifest.get(key)
        if got != want:
            raise ModelCacheError(root, f"cache manifest mismatch: {key} is {got!r}, expected {want!r}", fix)
    if not manifest["files"]:
        raise ModelCacheError(root, "cache manifest lists no files", fix)
    for rel, info in manifest["files"].items():
        p = root / rel
        if not p.is_file():
            raise ModelCacheError(root, f"cache file {rel} is missing", fix)
        size = p.stat().st_size
        if size != info.get("size"):
            raise ModelCacheError(
                root, f"cache file {rel} has {size} bytes, the manifest says {info.get('size')} (truncated?)", fix
            )
        if deep and sha256_file(p) != info.get("sha256"):
            raise ModelCacheError(root, f"cache file {rel} does not match its sha256 in the manifest", fix)
    return manifest


def _lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


@contextlib.contextmanager
def entry_lock(target: Path, timeout: float = -1) -> Iterator[None]:
    """Hold the builder lock of ``target`` (created beside it)."""
    from filelock import FileLock, Timeout

    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(_lock_path(target)), timeout=timeout)
    try:
        with lock:
            yield
    except Timeout:
        raise ModelError(f"another process holds the cache lock {_lock_path(target)}; try again later") from None


def _remove_stale(target: Path) -> None:
    """Remove temporaries of ``target`` left by killed builders (call with the lock held)."""
    for p in target.parent.glob(f".{target.name}{_TMP_MARK}*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in target.parent.glob(f".{target.name}{_OLD_MARK}*"):
        shutil.rmtree(p, ignore_errors=True)


def _normalise_modes(root: Path) -> None:
    """mkdtemp (and some writers) create private files; give the entry the usual umask modes."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(root, 0o777 & ~umask)
    for p in root.rglob("*"):
        if p.is_symlink():
            continue
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)


@dataclass
class BuildResult:
    path: Path
    built: bool  # False: an existing valid entry was reused
    manifest: dict[str, Any] = field(default_factory=dict)


def build_once(
    target: Path,
    builder: Callable[[Path], dict[str, Any]],
    *,
    force: bool = False,
    is_valid: Callable[[Path], bool] | None = None,
    lock_timeout: float = -1,
) -> BuildResult:
    """Build the cache entry ``target`` with ``builder(tmp_dir) -> manifest metadata`` unless it exists.

    Without ``force`` an existing entry for which ``is_valid(target)`` holds (default: a readable
    manifest whose file sizes match) is reused. Otherwise the builder runs under the lock into a
    temporary directory, the manifest is written, and the directory replaces ``target`` by rename.
    """
    target = Path(target)
    if is_valid is None:

        def is_valid(p: Path) -> bool:
            try:
                verify_entry(p)
                return True
            except ModelCacheError:
                return False

    if not force and target.is_dir() and is_valid(target):  # fast path, no lock
        return BuildResult(target, False, read_manifest(target))
    with entry_lock(target, lock_timeout):
        _remove_stale(target)
        if not force and target.is_dir() and is_valid(target):  # built by another process meanwhile
            return BuildResult(target, False, read_manifest(target))
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{_TMP_MARK}", dir=target.parent))
        try:
            meta = builder(tmp)
            manifest = write_manifest(tmp, meta or {})
            _normalise_modes(tmp)
            if target.exists() or target.is_symlink():
                old = target.parent / f".{target.name}{_OLD_MARK}{os.getpid()}"
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return BuildResult(target, True, manifest)
