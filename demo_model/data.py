"""Procedural captioned shapes: 64×64 RGB images "a {colour} {shape} on a {background} background", seeded numpy."""
import numpy as np

SIZE = 64
PALETTE = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (235, 215, 40),
           "purple": (150, 60, 190), "white": (240, 240, 240), "black": (20, 20, 20), "gray": (128, 128, 128)}
COLOURS = ("red", "green", "blue", "yellow", "purple", "white")
SHAPES = ("disc", "square", "triangle")
BACKGROUNDS = ("black", "gray", "white", "blue", "red")
# Never in the training set: the prompt-following test asks for it.
HELD_OUT = (("green", "triangle"),)
# Per-image colour jitter (0-255 units), so the model sees a colour as a neighbourhood, not one value.
JITTER = 12
# Shapes are drawn at twice the size and 2×2-averaged: anti-aliased edges.
SUPERSAMPLE = 2


def caption(label) -> str:
    """The prompt of a (colour, shape, background) label."""
    colour, shape, background = label
    return f"a {colour} {shape} on a {background} background"


def all_labels(held_out: bool | None = False) -> list:
    """Every (colour, shape, background) with background ≠ colour: trained ones (False), held-out (True), all (None)."""
    labels = [(c, s, b) for c in COLOURS for s in SHAPES for b in BACKGROUNDS if b != c]
    if held_out is None:
        return labels
    return [label for label in labels if ((label[0], label[1]) in HELD_OUT) == held_out]


def shape_mask(shape: str, cx: float, cy: float, size: float, resolution: int) -> np.ndarray:
    """Coverage in [0, 1] of an axis-aligned disc, square or upward triangle of half-extent `size` at (cx, cy)."""
    scale = resolution / SIZE
    yy, xx = (np.mgrid[0:resolution, 0:resolution] + 0.5) / scale
    dx, dy = xx - cx, yy - cy
    if shape == "disc":
        inside = dx ** 2 + dy ** 2 <= size ** 2
    elif shape == "square":
        inside = (np.abs(dx) <= 0.9 * size) & (np.abs(dy) <= 0.9 * size)
    else:  # apex at the top, base at the bottom: full width 2·size at dy = size, zero at dy = -size
        inside = (dy <= size) & (np.abs(dx) <= (dy + size) / 2)
    hi = inside.astype(np.float32)
    return hi.reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE).mean(axis=(1, 3))


def render(label, rng: np.random.Generator) -> np.ndarray:
    """One uint8 image (64, 64, 3) of `label` at a random position and size, with jittered colours."""
    colour, shape, background = label
    size = rng.uniform(9, 20)
    cx, cy = rng.uniform(size + 2, SIZE - size - 2, 2)
    fg = np.array(PALETTE[colour]) + rng.uniform(-JITTER, JITTER, 3)
    bg = np.array(PALETTE[background]) + rng.uniform(-JITTER, JITTER, 3)
    alpha = shape_mask(shape, cx, cy, size, SIZE * SUPERSAMPLE)[..., None]
    return np.clip(alpha * fg + (1 - alpha) * bg, 0, 255).round().astype(np.uint8)


def dataset(count: int, seed: int, held_out: bool | None = False):
    """(images uint8 (count, 64, 64, 3), labels): labels drawn uniformly from `all_labels(held_out)`."""
    rng = np.random.default_rng(seed)
    choices = all_labels(held_out)
    labels = [choices[i] for i in rng.integers(0, len(choices), count)]
    return np.stack([render(label, rng) for label in labels]), labels
