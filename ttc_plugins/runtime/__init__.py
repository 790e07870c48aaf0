"""The per-request runtime, engine-free: every rule a request goes through, written once.

Both backends call it; they only translate engine events into these calls and the results into
engine actions.

- :mod:`.wire`: the keys that travel with a request (frontend → worker → output), one place.
- :mod:`.requests`: frontend side: validate against the engine's facts, resolve the control, derive
  the cache salt, write the wire payload; worker side: rebuild the context from that payload.
- :mod:`.report`: a finished request's KV accounting, the ``ttc_kv_report`` /
  ``ttc_request_finished`` hooks and the summary the client gets.
- :mod:`.control_tables`: a forward pass's controls (``ttc_prepare_controls``) as per-layer tensors,
  cached per set of distinct controls.
"""
