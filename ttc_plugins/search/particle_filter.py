"""Particle filtering (Puri et al., 2025, arXiv 2502.01618; the its_hub algorithm).

``width`` particles advance one step per round; each is weighted by
``softmax(path_score / resample_temperature)`` over all particles and ``width`` particles are
resampled with replacement (seeded). An open particle drawn ``m`` times is forked into ``m``;
one drawn zero times is released. Finished particles stay in the population and can be drawn
again. Stops when every particle finished; the answer is picked by ``select``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .. import hookimpl
from .base import SearchStrategy, softmax
from .params import SearchParams
from .sampling import final_choice


class ParticleFilterParams(SearchParams):
    resample_temperature: float = Field(1.0, gt=0.0, le=100.0)
    select: Literal["best", "weighted_vote", "majority"] = "best"


class ParticleFilter(SearchStrategy):
    name = "particle_filter"
    Params = ParticleFilterParams

    def run(self, s):
        p = self.params
        particles = s.fork(s.root, p.width)
        resamples = 0
        while any(not b.finished for b in particles):
            open_ = [b for b in particles if not b.finished]
            stepped = yield from s.extend(open_)
            yield from s.score(stepped)
            alive = {id(b) for b in stepped}
            particles = [b for b in particles if b.finished or id(b) in alive]
            if not particles:
                break
            if all(b.finished for b in particles):
                break
            weights = softmax([s.path_score(b) for b in particles], p.resample_temperature)
            draws = s.rng.choices(range(len(particles)), weights=weights, k=p.width)
            counts = [draws.count(i) for i in range(len(particles))]
            resamples += 1
            nxt = []
            for b, m in zip(particles, counts):
                if b.finished:
                    nxt += [b] * m
                elif m == 0:
                    s.release([b])
                else:
                    nxt += s.fork(b, m)
            particles = nxt
        finished = list({id(b): b for b in particles if b.finished}.values())
        sel = final_choice(s, finished, [b for b in particles if not b.finished], p.select)
        sel.info["resamples"] = resamples
        return sel


@hookimpl
def ttc_register_search_strategies(register) -> None:
    register(ParticleFilter)
