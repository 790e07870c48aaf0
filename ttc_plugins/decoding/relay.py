"""Default plugin: relays ``ttc_process_logits`` to the decoders each request names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from ..manager import TTCPluginManager
    from ..types import LogitsBatch


class DecoderRelay:
    def __init__(self, manager: "TTCPluginManager"):
        self.decoders = manager.decoders

    @hookimpl
    def ttc_process_logits(self, batch: "LogitsBatch") -> None:
        groups: dict[str, tuple[list, list]] = {}
        for row in batch.rows:
            params = row.ctx.params
            for named in params.decoding if params is not None else ():
                rows, args = groups.setdefault(named.name, ([], []))
                rows.append(row)
                args.append(named.args)
        # Decoders run in the order requests listed them; rows of one decoder are batched.
        for name, (rows, args) in groups.items():
            self.decoders.get(name).apply(batch.logits, rows, args)
