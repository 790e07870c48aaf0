"""Monte Carlo tree search over steps (UCT with a scorer as the value estimate).

Every round selects up to ``parallel`` distinct expandable leaves by UCT (``Q + c*sqrt(ln N_parent /
(1 + N))``, a virtual visit on each selected path keeps parallel selections apart), forks each into
``expand`` children, extends and scores them, and backs each child's path score up to the root.
A finished child counts as a terminal evaluation. Runs ``iterations`` expansions in all; the
answer is the best finished path, else the end of the most-visited path (``select``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from .. import hookimpl
from ..types import Branch
from .base import SearchStrategy
from .params import SearchParams
from .sampling import final_choice


class MCTSParams(SearchParams):
    iterations: int = Field(16, ge=1, le=100000, description="leaf expansions in all")
    expand: int = Field(2, ge=1, le=64, description="children per expansion")
    parallel: int | None = Field(None, ge=1, description="leaves expanded per round (default: width)")
    exploration: float = Field(1.0, ge=0.0, description="UCT exploration constant c")
    select: Literal["best", "weighted_vote", "majority"] = "best"


@dataclass(eq=False)
class _Node:
    branch: Branch
    parent: "_Node | None"
    children: list["_Node"] = field(default_factory=list)
    visits: int = 0
    value: float = 0.0
    pending: int = 0  # virtual visits of this round

    @property
    def expandable(self) -> bool:
        return not self.children and not self.branch.finished


class MCTS(SearchStrategy):
    name = "mcts"
    Params = MCTSParams

    def _uct(self, parent: _Node, child: _Node) -> float:
        n = child.visits + child.pending
        if n == 0:
            return math.inf
        q = child.value / max(child.visits, 1)
        return q + self.params.exploration * math.sqrt(math.log(parent.visits + parent.pending + 1) / n)

    def _select(self, root: _Node) -> _Node | None:
        node = root
        while not node.expandable:
            options = [c for c in node.children if c.expandable or c.children]
            if not options:
                return None
            node = max(options, key=lambda c: self._uct(node, c))
        if node.pending:
            return None
        path = node
        while path is not None:
            path.pending += 1
            path = path.parent
        return node

    def run(self, s):
        p = self.params
        root = _Node(branch=s.root, parent=None)
        finished: list[Branch] = []
        done = 0
        while done < p.iterations:
            leaves: list[_Node] = []
            for _ in range(min(p.parallel or p.width, p.iterations - done)):
                leaf = self._select(root)
                if leaf is None:
                    break
                leaves.append(leaf)
            self._clear_pending(root)
            if not leaves:
                break
            done += len(leaves)
            kids: list[_Node] = []
            for leaf in leaves:
                for b in s.fork(leaf.branch, p.expand):
                    node = _Node(branch=b, parent=leaf)
                    leaf.children.append(node)
                    kids.append(node)
            stepped = yield from s.extend([k.branch for k in kids])
            ok = {id(b) for b in stepped}
            for leaf in leaves:  # evicted children leave the tree
                leaf.children = [c for c in leaf.children if id(c.branch) in ok]
            kids = [k for k in kids if id(k.branch) in ok]
            values = yield from s.score([k.branch for k in kids])
            for node, v in zip(kids, values):
                if node.branch.finished:
                    finished.append(node.branch)
                walk = node
                while walk is not None:
                    walk.visits += 1
                    walk.value += v
                    walk = walk.parent
        fallback = []
        node = root
        while node.children:
            node = max(node.children, key=lambda c: (c.visits, c.value))
        if node is not root:
            fallback = [node.branch]
        sel = final_choice(s, finished, fallback, p.select)
        sel.info.update({"iterations": done, "root_visits": root.visits})
        return sel

    def _clear_pending(self, node: _Node) -> None:
        stack = [node]
        while stack:
            n = stack.pop()
            n.pending = 0
            stack.extend(n.children)


@hookimpl
def ttc_register_search_strategies(register) -> None:
    register(MCTS)
