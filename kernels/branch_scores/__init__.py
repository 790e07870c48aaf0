"""Chosen-token log-probs and top-k candidates from logits (streaming logsumexp + top-k)."""

from .op import BranchScores, branch_scores

__all__ = ["branch_scores", "BranchScores"]
