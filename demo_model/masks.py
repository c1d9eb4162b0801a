"""Exact object masks of the demo world's pictures, for the edit benchmark's background metrics.

data.py is part of the shipped weights' provenance hash (train.py --check), so the mask replays `data.render`'s
geometry draws on a copy of the generator instead of changing render itself."""
import copy

import numpy as np

from . import data


def draw(label, rng: np.random.Generator) -> tuple:
    """`data.render(label, rng)` and the shape's coverage (64, 64) in [0, 1]: the exact object mask of that picture."""
    replay = copy.deepcopy(rng)
    image = data.render(label, rng)
    size = replay.uniform(9, 20)  # render's first two draws: the size, then the centre
    cx, cy = replay.uniform(size + 2, data.SIZE - size - 2, 2)
    return image, data.shape_mask(label[1], cx, cy, size, data.SIZE * data.SUPERSAMPLE)
