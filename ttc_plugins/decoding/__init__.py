"""Decoders: named, per-request logits processors.

A decoder is a class registered through ``ttc_register_decoders``::

    class MyDecoder:
        name = "my_decoder"              # an entry of the request's ttc.decoding list
        Params = MyParams                # pydantic model, extra="forbid"

        @classmethod
        def apply(cls, logits, rows, args) -> None:
            # logits: [num_rows, vocab] tensor; rows: the LogitsRow objects of the requests that
            # named this decoder; args[i]: rows[i]'s validated Params. Edit logits[row.index]
            # in place, and only those rows.
"""
