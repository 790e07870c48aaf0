"""ETS: efficient tree search (Hooper et al., 2025, arXiv 2502.13575) — REBASE-style expansion
with pruning that keeps KV sharing.

Each round the open leaves get REBASE weights ``p = softmax(path_score / balance_temperature)``
and the children REBASE would give them, ``m = allocate(p, budget)``. An integer program then
chooses which leaves to keep (``z``), given the search-tree nodes each kept leaf holds (``y``: a
node is retained when any kept leaf lies under it) and the semantic clusters of the leaves'
latest steps (``c``: covered when a kept leaf is in it)::

    maximise   sum_i O_i z_i  -  kv_weight * sum_v y_v / (|V| + 1)  +  coverage_weight * sum_k c_k / K
    subject to y_v >= z_i  for every leaf i and node v on its path
               c_k <= sum_{i in k} z_i
               1 <= sum_i z_i <= budget,   z, y, c binary

with ``O_i = m_i / budget`` (the outcome term: REBASE's share of the budget) and ``|V| + 1`` the
retained tree's nodes counting the root, as in the authors' code (``select_softmax_costmodel`` in
SqueezeAILab/ETS: every node costs ``1 / (M + N)``, ``lambdac`` = ``kv_weight``, ``lambdas`` =
``coverage_weight``; their MATH500 configs use 1.0 and 1.4-1.5). Solved with scipy's HiGHS
(``scipy.optimize.milp``). The budget is then split over the kept leaves in proportion to ``p``
(each at least one child). Retaining fewer nodes means less KV held; the coverage term keeps
semantically different steps alive.

Clusters come from average-linkage clustering of the leaves' latest steps at cosine distance
``cluster_distance``, embedded by ``embedder``: a registered embedder (:mod:`ttc_plugins.embedding`,
run in the process driving the search) or ``"engine"`` (the engine's ``embed`` call, a
character-trigram hashing embedder by default). By default ``minilm`` (all-MiniLM-L6-v2, a
sentence-BERT as the authors use) when its package is installed, else the engine's; the report's
``info["embedder"]`` says which one ran. ``cluster_distance`` defaults to the embedder's own.
The embedder matters: with the hashing one nearly every leaf is its own cluster, so the coverage
term pays ``coverage_weight / N`` for each kept leaf, cancels the node cost and ETS prunes almost
nothing (``benchmarks/results/ets-vs-rebase-kv-arith-short-smollm2``); a sentence embedder merges
rewordings of one step, so coverage rewards distinct ideas, not leaves. The default ``kv_weight``
(5) comes from a sweep with MiniLM on ``arith-short``
(``benchmarks/results/ets-vs-rebase-minilm-arith-short-smollm2``).
"""

from __future__ import annotations

from typing import Any, Generator, Sequence

import numpy as np
from pydantic import Field

from .. import hookimpl
from ..embedding import ENGINE, HashingEmbedder, embedder_instance, resolve_embedder
from ..types import Branch
from .base import SearchState, allocate, node_keys, softmax
from .rebase import Rebase, RebaseParams


class ETSParams(RebaseParams):
    # 5, not the authors' 1.0: with tied step scores (REBASE's shares flat) a node costs
    # kv_weight / (|V| + 1) against a leaf's 1 / N, so the weight must clearly exceed 1 to prune;
    # 5 is the lowest tried that holds the paper's average KV >= 1.8x below REBASE at widths 8
    # and 16 (benchmarks/results/ets-vs-rebase-minilm-arith-short-smollm2)
    kv_weight: float = Field(5.0, ge=0.0, description="lambda_b: cost of retained tree nodes")
    coverage_weight: float = Field(1.0, ge=0.0, description="lambda_s: reward for covered clusters")
    cluster_distance: float | None = Field(None, gt=0.0, le=2.0,
                                           description="cosine distance threshold of a cluster; None: the embedder's")
    embedder: str | None = Field(None, min_length=1, description="registered embedder or 'engine' for the coverage "
                                 "term; None: minilm when installed, else the engine's")
    ilp_time_limit_s: float = Field(5.0, gt=0.0)


def cluster_embeddings(vectors: Sequence[Sequence[float]], distance: float) -> list[int]:
    """Average-linkage clusters (cosine distance below ``distance``); labels 0..K-1."""
    n = len(vectors)
    if n == 1:
        return [0]
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    x = np.asarray(vectors, dtype=np.float64)
    d = np.clip(pdist(x, metric="cosine"), 0.0, 2.0)
    d = np.nan_to_num(d, nan=0.0)
    labels = fcluster(linkage(d, method="average"), t=distance, criterion="distance")
    remap: dict[int, int] = {}
    return [remap.setdefault(int(v), len(remap)) for v in labels]


def solve_retention(
    weights: Sequence[float],
    paths: Sequence[Sequence[Any]],
    clusters: Sequence[int],
    budget: int,
    *,
    kv_weight: float,
    coverage_weight: float,
    time_limit_s: float = 5.0,
) -> list[bool]:
    """The ETS integer program: which leaves to keep. ``weights[i]`` is leaf i's outcome term,
    ``paths[i]`` the tree-node keys on its path (the root, always retained, left out: it counts
    in the normalisation only), ``clusters[i]`` its semantic cluster."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import lil_matrix

    n = len(weights)
    nodes = sorted({v for path in paths for v in path}, key=repr)
    node_ix = {v: j for j, v in enumerate(nodes)}
    k = max(clusters) + 1 if clusters else 0
    nv, nz = len(nodes), n
    total = nz + nv + k  # variables: z (leaves), y (nodes), c (clusters)
    cost = np.zeros(total)
    cost[:nz] = -np.asarray(weights, dtype=np.float64)
    if nv:
        cost[nz : nz + nv] = kv_weight / (nv + 1)
    if k:
        cost[nz + nv :] = -coverage_weight / k
    rows = sum(len(p) for p in paths) + k + 1
    a = lil_matrix((rows, total))
    lo, hi = [], []
    r = 0
    for i, path in enumerate(paths):  # y_v - z_i >= 0
        for v in path:
            a[r, nz + node_ix[v]] = 1.0
            a[r, i] = -1.0
            lo.append(0.0)
            hi.append(np.inf)
            r += 1
    for c in range(k):  # sum_{i in c} z_i - c_k >= 0
        for i in range(n):
            if clusters[i] == c:
                a[r, i] = 1.0
        a[r, nz + nv + c] = -1.0
        lo.append(0.0)
        hi.append(np.inf)
        r += 1
    a[r, :nz] = 1.0  # 1 <= sum z <= budget
    lo.append(1.0)
    hi.append(float(max(1, budget)))
    res = milp(
        cost,
        constraints=LinearConstraint(a.tocsr(), lo, hi),
        integrality=np.ones(total),
        bounds=Bounds(0, 1),
        options={"time_limit": time_limit_s},
    )
    if res.x is None:  # no solution in time: keep the REBASE choice (all leaves with weight)
        return [True] * n
    return [bool(round(v)) for v in res.x[:nz]]


class ETS(Rebase):
    name = "ets"
    Params = ETSParams
    # set by run(): the embedder instance (None: the engine's embed) and the cluster threshold
    _embedder: Any = None
    _distance: float = HashingEmbedder.cluster_distance

    @classmethod
    def check(cls, params: ETSParams, pm: Any) -> None:
        resolve_embedder(pm, params.embedder)  # unknown or uninstallable names: 400 before the search

    def run(self, s):
        p = self.params
        cls = resolve_embedder(s.pm, p.embedder)
        # None: the engine embeds (with its hashing embedder unless the engine was given another)
        self._embedder = embedder_instance(cls) if cls is not None else None
        own = (cls or HashingEmbedder).cluster_distance
        self._distance = p.cluster_distance if p.cluster_distance is not None else own
        sel = yield from super().run(s)
        used = p.coverage_weight > 0
        sel.info["embedder"] = (cls.name if cls is not None else ENGINE) if used else None
        sel.info["cluster_distance"] = self._distance if used else None
        return sel

    def plan(self, s: SearchState, leaves: Sequence[Branch], budget: int) -> Generator[Any, Any, list[int]]:
        p = self.params
        weights = softmax([s.path_score(b) for b in leaves], p.balance_temperature)
        texts = [b.steps[-1].text if b.steps else b.text for b in leaves]
        if p.coverage_weight > 0 and len(leaves) > 1:
            vectors = yield from s.embed(texts, self._embedder)
            clusters = cluster_embeddings(vectors, self._distance)
        else:
            clusters = [0] * len(leaves)
        outcome = [m / budget for m in allocate(weights, budget)]
        keep = solve_retention(
            outcome, [node_keys(b) for b in leaves], clusters, budget,
            kv_weight=p.kv_weight, coverage_weight=p.coverage_weight, time_limit_s=p.ilp_time_limit_s,
        )
        kept = [i for i, z in enumerate(keep) if z]
        counts = [0] * len(leaves)
        extra = allocate([weights[i] for i in kept], budget - len(kept))
        for i, e in zip(kept, extra):
            counts[i] = 1 + e
        return counts


@hookimpl
def ttc_register_search_strategies(register) -> None:
    register(ETS)
