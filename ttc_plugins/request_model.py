"""The base of every per-request parameter model (``Params`` of controls, decoders, strategies,
scorers, embedders, and ``ttc.beam``).

- ``extra="forbid"``: a misspelled field is an error, never silently nothing;
- ``allow_inf_nan=False``: NaN or infinity is refused as "not a finite number" (a NaN compared
  with a bound would otherwise be reported as out of range, or slip through);
- validation is strict (:func:`ttc_plugins.params.validate_args` validates the request's JSON in
  pydantic's strict JSON mode): ``"4"`` is not the integer 4, ``1`` is not ``true``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
