"""Which (colour, shape, background) a demo picture shows, by pixel statistics (no learned weights): `classify` for the
64×64 demo world (data.py), `classify_scene` for the 128×128 scenes world (scenes.py)."""
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


def border_colour(pixels: np.ndarray) -> np.ndarray:
    """The median RGB of a picture's border frame (BORDER px wide): its background colour."""
    frame = np.concatenate([pixels[:BORDER].reshape(-1, 3), pixels[-BORDER:].reshape(-1, 3),
                            pixels[:, :BORDER].reshape(-1, 3), pixels[:, -BORDER:].reshape(-1, 3)])
    return np.median(frame, axis=0)


def segment(image: np.ndarray) -> tuple:
    """(shape colour or None, background colour, object mask) of a uint8 (64, 64, 3) image: background from the
    border, shape colour from the pixels far from it, the mask of pixels nearer the shape colour than the background
    (all False when no shape stands out)."""
    pixels = image.astype(np.float64)
    bg = border_colour(pixels)
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


def components(mask: np.ndarray) -> list:
    """The 4-connected components of a boolean mask, as boolean masks (label propagation by repeated min-pooling)."""
    big = mask.size + 1
    labels = np.where(mask, np.arange(mask.size).reshape(mask.shape), big)
    while True:
        padded = np.pad(labels, 1, constant_values=big)
        smallest = np.minimum.reduce([labels, padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
        smallest = np.where(mask, smallest, big)
        if np.array_equal(smallest, labels):
            return [labels == value for value in np.unique(labels[mask])]
        labels = smallest


FAR = 45.0  # RGB distance from the background that marks an object pixel: under half the nearest palette pair (94.6)
MIN_AREA = 60  # px: smaller blobs are sampling debris (the smallest drawn object, a triangle of half-extent 12: 288)


def scene_objects(image: np.ndarray) -> list:
    """[((colour, shape), outline mask), ...] left to right of a uint8 scenes picture (scenes.py, 128×128), by pixel
    statistics: the background from the border, each object a connected region far from it, its outline the half-way
    boundary between its colour and the background's (shape_of reads the shape)."""
    pixels = image.astype(np.float64)
    bg = border_colour(pixels)
    far = np.sqrt(np.square(pixels - bg).sum(axis=-1)) > FAR
    found = []
    for region in components(far):
        if region.sum() < MIN_AREA:
            continue
        fg = np.median(pixels[region], axis=0)
        axis = fg - bg
        rows, cols = np.nonzero(region.any(axis=1))[0], np.nonzero(region.any(axis=0))[0]
        box = np.zeros_like(region)
        box[max(0, rows[0] - 2):rows[-1] + 3, max(0, cols[0] - 2):cols[-1] + 3] = True
        outline = box & (((pixels - bg) @ axis) / (axis @ axis) > 0.5)
        found.append((cols.mean(), (nearest(fg, data.COLOURS), shape_of(outline)), outline))
    return [(pair, outline) for _, pair, outline in sorted(found, key=lambda item: item[0])]


def background_of(image: np.ndarray) -> str:
    """The background's palette name of a uint8 picture (border_colour)."""
    return nearest(border_colour(image.astype(np.float64)), data.BACKGROUNDS)


def classify_scene(image: np.ndarray) -> tuple:
    """(background, ((colour, shape), ...) left to right) of a uint8 scenes picture (scenes.py, 128×128):
    `background_of` and `scene_objects`."""
    return background_of(image), tuple(pair for pair, _ in scene_objects(image))
