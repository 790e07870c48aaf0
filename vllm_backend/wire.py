"""What travels with a request from the frontend to the worker, inside ``SamplingParams.extra_args``
(engine-free constants, so the frontend logic is unit-testable without torch or vLLM)."""

#: the request's ``ttc`` section; rewritten by the frontend to the canonical, validated JSON
TTC_KEY = "ttc"
#: the control resolved in the frontend (``ControlSpec.to_json()``); never accepted from clients
RESOLVED_KEY = "_ttc_control"
#: the engine request id, for the worker-side ``RequestContext``
REQUEST_ID_KEY = "_ttc_request_id"
PRIVATE_KEYS = (RESOLVED_KEY, REQUEST_ID_KEY)
#: a step-level search's branch hold / fork request (``{"hold": key, "fork_from": key}``), read by
#: the TTC scheduler (``held_branches``); a hint the scheduler checks, so clients may send it too
BRANCH_KEY = "ttc_branch"
