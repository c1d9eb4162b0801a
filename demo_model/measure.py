"""Which (colour, shape, background) a 64×64 RGB image shows, by pixel statistics (no learned weights)."""
import numpy as np

from . import data

BORDER = 3  # px: shapes keep 2 px from the edge, the border frame is mostly background
# Mean width of the top third over that of the bottom third: upward triangle 0.2 (≈ 0.5 when its corners are rounded
# by a blurry decoder), disc and square 1
TAPER = 0.7


def nearest(rgb: np.ndarray, names) -> str:
    """The palette name among `names` nearest to an RGB colour."""
    return min(names, key=lambda name: np.square(rgb - np.array(data.PALETTE[name])).sum())


def templates(height: int, width: int) -> dict:
    """The disc and the square drawn to fill a height×width bounding box, as boolean masks."""
    v, u = np.mgrid[0:height, 0:width]
    u, v = (u + 0.5) / width * 2 - 1, (v + 0.5) / height * 2 - 1
    return {"disc": u ** 2 + v ** 2 <= 1, "square": np.ones((height, width), bool)}


def shape_of(mask: np.ndarray) -> str:
    """disc, square or triangle from a boolean mask: the upward triangle tapers (which survives rounded corners);
    between disc and square, the template fitted to the bounding box that overlaps the mask best (IoU)."""
    rows, cols = np.nonzero(mask.sum(axis=1) >= 2)[0], np.nonzero(mask.sum(axis=0) >= 2)[0]
    if len(rows) < 3 or len(cols) < 3:
        return "none"
    box = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    shapes = templates(*box.shape)
    widths, third = box.sum(axis=1), max(1, len(box) // 3)
    if widths[:third].mean() < TAPER * widths[-third:].mean():
        return "triangle"
    overlaps = {name: (box & shapes[name]).sum() / (box | shapes[name]).sum() for name in ("disc", "square")}
    return max(overlaps, key=overlaps.get)


def segment(image: np.ndarray) -> tuple:
    """(shape colour or None, background colour, object mask) of a uint8 (64, 64, 3) image: background from the
    border, shape colour from the pixels far from it, the mask of pixels nearer the shape colour than the background
    (all False when no shape stands out)."""
    pixels = image.astype(np.float64)
    frame = np.concatenate([pixels[:BORDER].reshape(-1, 3), pixels[-BORDER:].reshape(-1, 3),
                            pixels[:, :BORDER].reshape(-1, 3), pixels[:, -BORDER:].reshape(-1, 3)])
    bg = np.median(frame, axis=0)
    distance = np.sqrt(np.square(pixels - bg).sum(axis=-1))
    far = distance > max(60.0, 0.5 * distance.max())
    if far.sum() < 9:
        return None, bg, np.zeros(pixels.shape[:2], dtype=bool)
    fg = np.median(pixels[far], axis=0)
    # the half-way boundary between the two colours, as the shape was drawn (anti-aliased edges are mixtures)
    axis = fg - bg
    return fg, bg, ((pixels - bg) @ axis) / (axis @ axis) > 0.5


def classify(image: np.ndarray) -> tuple:
    """(colour, shape, background) of a uint8 (64, 64, 3) image, from `segment`."""
    fg, bg, mask = segment(image)
    if fg is None:
        return "none", "none", nearest(bg, data.BACKGROUNDS)
    return nearest(fg, data.COLOURS), shape_of(mask), nearest(bg, data.BACKGROUNDS)
