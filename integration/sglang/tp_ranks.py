"""One tensor-parallel rank of the worker's residual control, for ``test_tensor_parallel``.

SGLang on CPU cannot start ``--tp 2`` (its TP group needs a CUDA PyNccl communicator), so the
suite covers the structure the controls depend on under TP instead: every TP rank's scheduler
runs the same forward hook on its decoder layers, and a layer's output may reach that hook as
this rank's *partial* of a sum the boundary still owes (SGLang's ``UnreducedOutput``: the
all-reduce of ``o_proj`` / ``down_proj`` postponed to the next layer's prepare). The control must
read the completed residual stream and add its change exactly once, after the sum: added to each
rank's partial it would count ``world`` times.

Run as ``python tp_ranks.py RANK WORLD INIT_FILE SPEC_JSON OUT``: joins a gloo group of ``WORLD``
processes and, for each case of the spec, plays one extend batch through
:class:`sglang_backend.worker.WorkerState` (the real per-request contexts, control tables and layer
hook) on SGLang's own ``ResidualStream``; writes, per case, the stream each layer hands the next
one (``fold``: the output completed, the residual added) to ``OUT`` as JSON.
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import torch
import torch.distributed as dist


class _Req:
    """The fields of SGLang's ``Req`` the worker reads (held weakly there, as SGLang's are)."""

    def __init__(self, rid: str, prompt: list[int], custom_params: dict):
        self.rid, self.origin_input_ids = rid, prompt
        self.sampling_params = SimpleNamespace(custom_params=custom_params)


def _partials(full: torch.Tensor, rank: int, world: int, seed: int) -> torch.Tensor:
    """This rank's share of ``full``: uneven random shares that sum to it (rank 0 takes the rest)."""
    if world == 1:
        return full.clone()
    g = torch.Generator().manual_seed(seed)
    shares = [torch.randn(full.shape, generator=g) for _ in range(world - 1)]
    return (full - sum(shares)) if rank == 0 else shares[rank - 1]


def main(rank: int, world: int, init_file: str, spec_path: str, out_path: str) -> None:
    from sglang.srt.layers.layer_boundary.output import UnreducedOutput
    from sglang.srt.layers.layer_boundary.residual import batch as residual_batch
    from sglang.srt.layers.layer_boundary.residual.add_norm import PLAIN_ADD
    from sglang.srt.layers.layer_boundary.residual.stream import ResidualStream
    from sglang.srt.model_executor.forward_batch_info import ForwardMode

    from ttc_plugins.manager import get_plugin_manager
    from ttc_plugins.runtime.control_tables import ControlTables
    from ttc_plugins.runtime.requests import prepare_request
    from ttc_plugins.sglang_backend.config import parse_engine_config
    from ttc_plugins.sglang_backend.worker import FAILED_ATTR, WorkerState
    from ttc_plugins.ttc_layer.hosting import load_hosted
    from ttc_plugins.types import EngineFacts

    spec = json.loads(open(spec_path).read())
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)

    def all_reduce(partial: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(partial)  # in place, as SGLang's group all-reduce
        return partial

    hidden, layers = spec["hidden_size"], spec["num_layers"]
    config = parse_engine_config({"ttc_layers": spec["ttc_layers"]})
    pm = get_plugin_manager()
    adapters = load_hosted(config.ttc_layers, root="TTC_SGLANG_CONFIG", hidden_size=hidden, num_layers=layers,
                           device="cpu")
    facts = EngineFacts(hidden_size=hidden, num_layers=layers, vocab_size=spec["vocab_size"], **config.control_facts())
    counts = spec["counts"]
    n = sum(counts)
    g = torch.Generator().manual_seed(spec["seed"])
    residual = torch.randn(n, hidden, generator=g)
    outputs = [torch.randn(n, hidden, generator=g) for _ in range(layers)]  # each layer's complete output

    def play(owed: bool, ttcs: list) -> dict:
        state = WorkerState(pm, config)
        # what on_model_loaded sets up from the model runner, without a model
        state.hidden_size, state.num_layers, state.adapters = hidden, layers, adapters
        state.tables = ControlTables(pm, hidden_size=hidden, num_layers=layers)
        rids, keep = [], []  # the worker holds requests weakly: keep them alive
        for i, (ttc, count) in enumerate(zip(ttcs, counts, strict=True)):
            rid = f"r{i}"
            prompt = list(range(2, 2 + count))
            if ttc is not None:
                prepared = prepare_request(pm, ttc, request_id=rid, prompt_token_ids=prompt, facts=facts,
                                           engine="sglang")
                req = _Req(rid, prompt, prepared.wire)
                state.on_req_created(req)
                keep.append(req)
            rids.append(rid)

        batch = SimpleNamespace(rids=rids, forward_mode=ForwardMode.EXTEND, extend_seq_lens_cpu=counts,
                                input_ids=torch.zeros(n, dtype=torch.long), residual_stream=None)
        state.before_forward(batch)
        positions = torch.arange(n)
        batch.residual_stream = stream = ResidualStream(residual.clone())  # as the previous stage wrote it
        streams = []
        for i in range(layers):
            if owed:
                out = stream.record(UnreducedOutput(partial=_partials(outputs[i], rank, world, spec["seed"] + i),
                                                    complete_sum=all_reduce), PLAIN_ADD)
            else:  # the exit already reduced: every rank holds the complete output
                out = stream.record(outputs[i].clone(), PLAIN_ADD)
            new = state._make_layer_hook(i)(None, (positions, out, batch), {}, out)
            out = out if new is None else new
            streams.append(residual_batch.fold(out, batch).tolist())
        state.after_forward(batch)
        failed = {r.rid: str(getattr(r, FAILED_ATTR)) for r in keep if getattr(r, FAILED_ATTR, None) is not None}
        return {"streams": streams, "failed": failed}

    results = {case["name"]: play(case["owed"], case["ttcs"]) for case in spec["cases"]}
    with open(out_path, "w") as f:
        json.dump(results, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
