"""Hidden-state controls: what a request may do to the residual stream.

A control is a class registered through ``ttc_register_controls``::

    class MyControl:
        name = "my_control"               # the request's ttc.control.name
        Params = MyParams                 # pydantic model, extra="forbid"

        @classmethod
        def resolve(cls, params, ctx) -> ControlSpec:   # frontend: fix every parameter
            ...

        @classmethod
        def plan(cls, spec, slot, plan) -> None:        # worker: plan.add_vector(...) per layer
            ...

Only names and JSON travel with a request; the code is whatever is installed on the server.
"""
