"""The TTC layer as an adapter on a pretrained model's residual stream.

Per token, a linear map of the hidden state parameterises a finite-horizon LQR problem per head
(initial latent state h0, diagonal dynamics with discount, control cost R, stage cost Q shared
across heads with per-head discounts, terminal cost Q_f); the layer solves for the first optimal
control u0 (the ``lqr`` kernel), rescales it to |h0| and projects it back to the model width,
through a learnable per-channel gate initialised at zero: a fresh adapter adds exact zeros, so
the model's outputs stay bit-identical until training opens the gate.
The planning horizon T is per token, so requests in one batch can plan over different horizons,
and T = 0 returns exactly zero: the adapter is off for that token.

Weights travel as one safetensors file (tensors + the config as JSON metadata): no pickles.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .config import FORMAT, FORMAT_KEY, INFO_KEY, META_KEY, TTCAdapterConfig, read_adapter_file

def _l2norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


class TTCAdapter(nn.Module):
    """``delta = adapter(hidden[N, hidden_size], horizon[N])``; add ``scale * delta`` to the stream."""

    def __init__(self, config: TTCAdapterConfig):
        super().__init__()
        self.config = c = config
        self.in_proj = nn.Linear(c.hidden_size, c.in_features)
        self.B_bases = nn.Parameter(torch.randn(c.b_rank, c.state_dim, c.control_dim) / math.sqrt(c.state_dim))
        self.Q_bases = nn.Parameter(torch.randn(c.q_rank, c.state_dim, c.state_dim) / math.sqrt(c.state_dim))
        self.out_proj = nn.Linear(c.heads * c.control_dim, c.hidden_size)
        self.gate = nn.Parameter(torch.zeros(c.hidden_size))

    def problem(self, x: torch.Tensor, horizon: torch.Tensor) -> dict[str, torch.Tensor]:
        """The LQR problem each token poses (the ``lqr`` op's keyword arguments), in float32."""
        c = self.config
        N, H, D, DU = x.shape[0], c.heads, c.state_dim, c.control_dim
        z = self.in_proj(x.float())
        per_head, shared = z[:, : H * c.per_head].view(N, H, c.per_head), z[:, H * c.per_head :]
        h0, a, lgq, r_inv, lgb, qf_mix, lga = per_head.split([D, D, D, DU, DU, c.q_rank, 1], dim=-1)
        b_mix, q_mix = shared.split([c.b_rank, c.q_rank], dim=-1)
        psd = self.Q_bases @ self.Q_bases.transpose(-1, -2) / math.sqrt(D)  # [q_rank, D, D], PSD
        return {
            "h0": h0,
            "a": _l2norm(a),
            "r_inv": _l2norm(F.softplus(r_inv)).clamp_min(1e-6),
            "log_gamma_a": -F.softplus(lga.squeeze(-1)),
            "log_gamma_b": -F.softplus(lgb),
            "log_gamma_q": -F.softplus(lgq),
            "B": torch.einsum("nr,rde->nde", _l2norm(F.softplus(b_mix)), self.B_bases),
            "Q": torch.einsum("nr,rde->nde", _l2norm(F.softplus(q_mix)), psd),
            "Qf": torch.einsum("nhr,rde->nhde", _l2norm(F.softplus(qf_mix)), psd),
            "T": horizon,
        }

    def forward(self, x: torch.Tensor, horizon: torch.Tensor) -> torch.Tensor:
        from ttc_plugins.kernels import lqr

        p = self.problem(x, horizon)
        u0 = lqr(**p)[0]  # [N, H, DU]; zero where T = 0 or the solve was flagged
        u0 = _l2norm(u0) * p["h0"].norm(dim=-1, keepdim=True)
        delta = self.out_proj(u0.flatten(1)) * self.gate
        return torch.where((horizon > 0)[:, None], delta, torch.zeros_like(delta)).to(x.dtype)

    # -- files ---------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(tensors, str(path), metadata={META_KEY: json.dumps(asdict(self.config))})

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu", layer: int | None = None) -> "TTCAdapter":
        """The adapter in ``path`` (a format-2 file: the one for decoder ``layer``; it may be left out
        when the file holds one).

        :raises ValueError: unreadable file, or no adapter for ``layer`` in it (naming what it holds).
        """
        from safetensors.torch import load_file

        info = read_adapter_file(path)
        prefix = info.prefix(layer)
        adapter = cls(info.config)
        tensors = {k[len(prefix):]: v for k, v in load_file(str(path)).items() if k.startswith(prefix)}
        if "gate" not in tensors:
            # a file written before the gate existed: its adapter added its output ungated, which
            # is a fully open gate (read as it always behaved)
            tensors["gate"] = torch.ones(adapter.config.hidden_size)
        adapter.load_state_dict(tensors)
        return adapter.to(device)


def save_adapters(path: str | Path, adapters: dict[int, TTCAdapter], *, base_model: dict | None = None,
                  horizon: tuple[int, int] | None = None) -> None:
    """Write adapters for several decoder layers as one format-2 file (``TTCAdapter.load(path,
    layer=i)`` reads one back); they must share one shape."""
    from safetensors.torch import save_file

    configs = {a.config for a in adapters.values()}
    if len(configs) != 1:
        raise ValueError("adapters saved in one file must share one shape (TTCAdapterConfig)")
    tensors = {f"layers.{i}.{k}": v.detach().contiguous().cpu()
               for i, a in sorted(adapters.items()) for k, v in a.state_dict().items()}
    info = {"base_model": base_model, "layers": sorted(adapters), "horizon": list(horizon) if horizon else None}
    save_file(tensors, str(path), metadata={META_KEY: json.dumps(asdict(configs.pop())), FORMAT_KEY: str(FORMAT),
                                            INFO_KEY: json.dumps(info)})
