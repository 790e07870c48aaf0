"""What travels with a request between the engine's processes, by key.

The frontend (API server / tokenizer process) writes these into the request's engine-side
parameters (vLLM: ``SamplingParams.extra_args``; SGLang: ``SamplingParams.custom_params``); the
worker reads them back. JSON only: nothing is ever unpickled from a request.
"""

#: the request's ``ttc`` section; rewritten by the frontend to the canonical, validated JSON
TTC_KEY = "ttc"
#: the control resolved in the frontend (``ControlSpec.to_json()``); never accepted from clients
RESOLVED_KEY = "_ttc_control"
#: the engine request id, for the worker-side ``RequestContext`` (vLLM rows do not carry it)
REQUEST_ID_KEY = "_ttc_request_id"
#: keys only the frontend writes: a client value under one of them is dropped
PRIVATE_KEYS = (RESOLVED_KEY, REQUEST_ID_KEY)
#: a step-level search's branch hold / fork request (``{"hold": key, "fork_from": key}``), read by
#: vLLM's TTC scheduler; a hint the scheduler checks, so clients may send it too
BRANCH_KEY = "ttc_branch"
#: a token beam search's report, from the scheduler to the frontend (vLLM: ``kv_transfer_params``;
#: SGLang: request-level ``customized_info``); the client gets it as ``ttc.beam``
BEAM_REPORT_KEY = "ttc_beam"
#: prefix of the cache salt the ``ttc_cache_salt`` hook's key gets (a request's own salt stays)
SALT_PREFIX = "ttc:"
