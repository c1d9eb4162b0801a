"""Which (colour, shape, background) a 64×64 RGB image shows, by pixel statistics (no learned weights)."""
import numpy as np

from . import data

BORDER = 3  # px: shapes keep 2 px from the edge, the border frame is mostly background
SQUARE_FILL = 0.90  # of the bounding box: square 1, disc π/4 ≈ 0.79, upward triangle 1/2
TAPER = 0.6  # top third narrower than this fraction of the bottom third: the upward triangle (≈ 1/3), not the disc (1)


def nearest(rgb: np.ndarray, names) -> str:
    """The palette name among `names` nearest to an RGB colour."""
    return min(names, key=lambda name: np.square(rgb - np.array(data.PALETTE[name])).sum())


def shape_of(mask: np.ndarray) -> str:
    """disc, square or triangle from a boolean mask: how much of its bounding box it fills, and whether it tapers."""
    rows, cols = np.nonzero(mask.sum(axis=1) >= 2)[0], np.nonzero(mask.sum(axis=0) >= 2)[0]
    if len(rows) < 3 or len(cols) < 3:
        return "none"
    box = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    if box.mean() >= SQUARE_FILL:
        return "square"
    widths, third = box.sum(axis=1), max(1, len(box) // 3)
    return "triangle" if widths[:third].mean() < TAPER * widths[-third:].mean() else "disc"


def classify(image: np.ndarray) -> tuple:
    """(colour, shape, background) of a uint8 (64, 64, 3) image: background from the border, shape colour from the
    pixels far from it, shape from the mask of pixels nearer the shape colour than the background."""
    pixels = image.astype(np.float64)
    frame = np.concatenate([pixels[:BORDER].reshape(-1, 3), pixels[-BORDER:].reshape(-1, 3),
                            pixels[:, :BORDER].reshape(-1, 3), pixels[:, -BORDER:].reshape(-1, 3)])
    bg = np.median(frame, axis=0)
    distance = np.sqrt(np.square(pixels - bg).sum(axis=-1))
    far = distance > max(60.0, 0.5 * distance.max())
    if far.sum() < 9:
        return "none", "none", nearest(bg, data.BACKGROUNDS)
    fg = np.median(pixels[far], axis=0)
    # the half-way boundary between the two colours, as the shape was drawn (anti-aliased edges are mixtures)
    axis = fg - bg
    mask = ((pixels - bg) @ axis) / (axis @ axis) > 0.5
    return nearest(fg, data.COLOURS), shape_of(mask), nearest(bg, data.BACKGROUNDS)
