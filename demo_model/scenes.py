"""The scenes world: 128×128 captioned pictures of one or two shapes, "a {colour} {shape} on a {background} background"
or "a {colour} {shape} and a {colour} {shape} on a {background} background" (objects named left to right), with the
exact coverage mask of every object (the edit benchmark's ground truth). Seeded numpy; the palette, shapes and
backgrounds are the demo world's (data.py).

- Held out: a green triangle never appears in training (prompt following is asked for it).
- Rare: a purple square appears in under 1 % of training pictures (rare-concept generation is asked for it).
"""
from dataclasses import dataclass

import numpy as np

from . import data

SIZE = 128
SUPERSAMPLE = 2  # shapes drawn at twice the size and 2×2-averaged: anti-aliased edges
HELD_OUT = ("green", "triangle")
RARE = ("purple", "square")
RARE_KEEP = 0.07  # a drawn rare object is kept with this probability: ≈ 0.6 % of pictures show one (rare_fraction)
TWO_OBJECTS = 0.5  # fraction of pictures with two objects
SINGLE_SIZE = (16.0, 36.0)  # half-extent range (px) of a lone object
PAIR_SIZE = (12.0, 26.0)  # half-extent range (px) of each of two objects
MARGIN = 3.0  # px kept between an object and the picture's edge
GAP = 6.0  # px kept between two objects' circumscribed circles
CIRCUMSCRIBE = 1.3  # circumradius / half-extent, over the three shapes (the square's corner: 0.9·√2 ≈ 1.27)


@dataclass(frozen=True)
class Thing:
    """One drawn object: its colour and shape names, centre (px) and half-extent (px)."""
    colour: str
    shape: str
    cx: float
    cy: float
    size: float


@dataclass(frozen=True)
class Scene:
    """A picture's content: background name and objects, left to right."""
    background: str
    things: tuple

    @property
    def caption(self) -> str:
        """The prompt the picture was trained with."""
        named = " and ".join(f"a {thing.colour} {thing.shape}" for thing in self.things)
        return f"{named} on a {self.background} background"

    @property
    def label(self) -> tuple:
        """(background, ((colour, shape), ...) left to right): what `classify` reads back."""
        return self.background, tuple((thing.colour, thing.shape) for thing in self.things)


def pairs(held_out: bool = False) -> list:
    """Every (colour, shape); with held_out=False, without the held-out pair."""
    return [(c, s) for c in data.COLOURS for s in data.SHAPES if held_out or (c, s) != HELD_OUT]


def coverage(shape: str, cx: float, cy: float, size: float) -> np.ndarray:
    """Coverage in [0, 1] (SIZE, SIZE) of an axis-aligned disc, square (half-side 0.9·size) or upward triangle (apex
    at the top, base 2·size wide) of half-extent `size` centred at (cx, cy), supersampled."""
    fine = SIZE * SUPERSAMPLE
    yy, xx = (np.mgrid[0:fine, 0:fine] + 0.5) / SUPERSAMPLE
    dx, dy = xx - cx, yy - cy
    if shape == "disc":
        inside = dx ** 2 + dy ** 2 <= size ** 2
    elif shape == "square":
        inside = (np.abs(dx) <= 0.9 * size) & (np.abs(dy) <= 0.9 * size)
    else:
        inside = (dy <= size) & (np.abs(dx) <= (dy + size) / 2)
    return inside.astype(np.float32).reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE).mean(axis=(1, 3))


def draw_pair(rng: np.random.Generator, allowed: list) -> tuple:
    """A (colour, shape) from `allowed`, the rare pair kept only with probability RARE_KEEP."""
    while True:
        pair = allowed[rng.integers(len(allowed))]
        if pair != RARE or rng.random() < RARE_KEEP:
            return pair


def place(rng: np.random.Generator, sizes: list) -> list:
    """Centres for objects of half-extents `sizes`, inside the margin and apart by GAP (rejection sampling)."""
    while True:
        centres = [rng.uniform(CIRCUMSCRIBE * s + MARGIN, SIZE - CIRCUMSCRIBE * s - MARGIN, 2) for s in sizes]
        if len(sizes) == 1 or np.hypot(*(centres[0] - centres[1])) >= CIRCUMSCRIBE * sum(sizes) + GAP:
            return centres


def random_scene(rng: np.random.Generator, allowed: list | None = None) -> Scene:
    """A scene drawn from `allowed` (colour, shape) pairs (default: the trained ones): one or two objects of
    different colours, on a background of neither colour."""
    allowed = pairs() if allowed is None else allowed
    count = 2 if rng.random() < TWO_OBJECTS else 1
    chosen = [draw_pair(rng, allowed)]
    while len(chosen) < count:
        pair = draw_pair(rng, allowed)
        if pair[0] != chosen[0][0]:
            chosen.append(pair)
    backgrounds = [b for b in data.BACKGROUNDS if b not in {c for c, _ in chosen}]
    background = backgrounds[rng.integers(len(backgrounds))]
    sizes = [rng.uniform(*(SINGLE_SIZE if count == 1 else PAIR_SIZE)) for _ in chosen]
    things = [Thing(c, s, float(x), float(y), float(r)) for (c, s), (x, y), r in zip(chosen, place(rng, sizes), sizes)]
    return Scene(background, tuple(sorted(things, key=lambda thing: thing.cx)))


def render(scene: Scene, rng: np.random.Generator) -> tuple:
    """(uint8 image (SIZE, SIZE, 3), coverage masks (objects, SIZE, SIZE) in [0, 1]): colours jittered per picture."""
    image = np.array(data.PALETTE[scene.background], np.float64) + rng.uniform(-data.JITTER, data.JITTER, 3)
    image = np.broadcast_to(image, (SIZE, SIZE, 3)).copy()
    masks = []
    for thing in scene.things:
        alpha = coverage(thing.shape, thing.cx, thing.cy, thing.size)
        colour = np.array(data.PALETTE[thing.colour]) + rng.uniform(-data.JITTER, data.JITTER, 3)
        image = alpha[..., None] * colour + (1 - alpha[..., None]) * image
        masks.append(alpha)
    return np.clip(image, 0, 255).round().astype(np.uint8), np.stack(masks)


def dataset(count: int, seed: int, allowed: list | None = None) -> tuple:
    """(images uint8 (count, SIZE, SIZE, 3), scenes): `count` random scenes from `allowed` pairs, rendered."""
    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng, allowed) for _ in range(count)]
    return np.stack([render(scene, rng)[0] for scene in scenes]), scenes


def rare_fraction(scenes: list) -> float:
    """The fraction of `scenes` that show the rare pair."""
    return float(np.mean([any((t.colour, t.shape) == RARE for t in scene.things) for scene in scenes]))

