"""Patch: ``vllm.v1.engine.input_processor.InputProcessor.{__init__, process_inputs}``.

Why: a request's ``cache_salt`` must follow its control configuration (steered and unsteered
requests never share KV), and vLLM has no per-request seam that can set it from
``SamplingParams.extra_args``; the resolved control must also travel to the worker with the request.
How: ``__init__`` validates ``additional_config.ttc`` before the engine core starts (bad settings
stop the engine, naming the key) and builds the :class:`~..frontend.FrontendState`;
``process_inputs`` validates ``extra_args["ttc"]`` (``TTCParamError`` -> ``VLLMValidationError``,
HTTP 400 naming the field), runs the original, then writes the canonical ``ttc`` JSON and the
resolved control into the request's private copy of the sampling params and sets ``cache_salt``.
See LEDGER.md.
"""

from __future__ import annotations

import functools

from ttc_plugins.errors import TTCParamError
from ttc_plugins.runtime.requests import combine_salt, without_private
from ttc_plugins.runtime.wire import BRANCH_KEY, PRIVATE_KEYS, TTC_KEY

from .. import frontend

TARGETS = (
    "vllm.v1.engine.input_processor.InputProcessor.__init__",
    "vllm.v1.engine.input_processor.InputProcessor.process_inputs",
)
_applied = False


def apply() -> None:
    global _applied
    if _applied:
        return
    from vllm.exceptions import VLLMValidationError
    from vllm.sampling_params import SamplingParams
    from vllm.v1.engine.input_processor import InputProcessor

    original_init = InputProcessor.__init__
    original_process = InputProcessor.process_inputs

    @functools.wraps(original_init)
    def __init__(self, vllm_config, *args, **kwargs):
        state = frontend.FrontendState.from_vllm_config(vllm_config)  # raises TTCConfigError at start
        original_init(self, vllm_config, *args, **kwargs)
        self._ttc_frontend = state
        frontend.set_block_size(state.block_size)

    @functools.wraps(original_process)
    def process_inputs(self, request_id, prompt, params, *args, **kwargs):
        extra = params.extra_args if isinstance(params, SamplingParams) else None
        if extra and BRANCH_KEY in extra:
            try:
                frontend.check_branch_args(extra[BRANCH_KEY])
            except TTCParamError as exc:
                raise VLLMValidationError(str(exc), parameter=exc.field) from None
        if not extra or not any(k in extra for k in (TTC_KEY, *PRIVATE_KEYS)):
            return original_process(self, request_id, prompt, params, *args, **kwargs)
        raw = extra.get(TTC_KEY)
        state = getattr(self, "_ttc_frontend", None) or frontend.FrontendState.from_vllm_config(self.vllm_config)
        try:
            parsed = frontend.parse_request_params(raw, state.facts)  # fail before tokenizing
        except TTCParamError as exc:
            raise VLLMValidationError(str(exc), parameter=exc.field) from None
        if parsed is not None and parsed.beam is not None and getattr(params, "n", 1) != 1:
            # n copies would each run the whole search: every beam is already in ttc.beam
            raise VLLMValidationError("n: a ttc.beam request answers its best beam (all beams are in the "
                                      "ttc.beam report); use n=1", parameter="n")
        request = original_process(self, request_id, prompt, params, *args, **kwargs)
        try:
            entries, salt = state.prepare(raw, request.request_id, request.prompt_token_ids)
        except TTCParamError as exc:
            raise VLLMValidationError(str(exc), parameter=exc.field) from None
        sp = request.sampling_params  # the request's own clone
        new_extra = without_private(sp.extra_args)
        if entries[TTC_KEY] is None:
            new_extra.pop(TTC_KEY, None)
        else:
            new_extra.update(entries)
        sp.extra_args = new_extra or None
        request.cache_salt = combine_salt(request.cache_salt, salt)
        return request

    InputProcessor.__init__ = __init__
    InputProcessor.process_inputs = process_inputs
    InputProcessor._ttc_patched = True
    _applied = True
