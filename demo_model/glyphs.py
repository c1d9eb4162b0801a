"""The second model's world: captioned 64×64 glyphs, "a {colour} letter {X} on a {texture} background": a letter of
the font Pillow ships (`ImageFont.load_default`, FreeType) over a two-tone texture (plain, stripes, checks, dots or
wavy curves) of a background colour the caption does not name (fewer captions to encode); seeded numpy and Pillow,
nothing downloaded. Not the demo's shapes: other data for the second model."""
import numpy as np

SIZE = 64
SUPERSAMPLE = 2  # drawn at 128×128 and 2×2-averaged: anti-aliased edges and strokes
PALETTE = {"red": (215, 45, 45), "green": (45, 170, 70), "blue": (50, 90, 215), "yellow": (235, 205, 50),
           "white": (240, 240, 235), "orange": (235, 135, 40), "gray": (120, 120, 125), "black": (25, 25, 30),
           "purple": (120, 60, 160)}
COLOURS = ("red", "green", "blue", "yellow", "white", "orange")
LETTERS = ("A", "E", "H", "K", "O", "R", "S", "X")
TEXTURES = ("plain", "striped", "checked", "dotted", "wavy")
BACKGROUNDS = ("gray", "black", "blue", "purple")
JITTER = 12  # per-image colour jitter (0-255 units)
TONE = 0.35  # the texture's second tone: the background blended this far toward white (dark ones) or black
FONT_SIZES = (30, 46)  # font size range at 64×64 (capitals about 0.7 of it tall)
MAX_TILT = 20.0  # degrees
BOLD = 2  # px added around every stroke: strokes about as wide as a latent cell (8 px) is tall


def caption(label) -> str:
    """The prompt of a (colour, letter, texture, background) label (the background colour unnamed)."""
    colour, letter, texture, _ = label
    return f"a {colour} letter {letter} on a {texture} background"


def all_labels() -> list:
    """Every (colour, letter, texture, background) with background ≠ colour."""
    return [(c, x, t, b) for c in COLOURS for x in LETTERS for t in TEXTURES for b in BACKGROUNDS if b != c]


def texture_mask(texture: str, rng: np.random.Generator) -> np.ndarray:
    """Coverage in [0, 1] (64×64) of the texture's second tone: random period, phase and angle; anti-aliased."""
    n = SIZE * SUPERSAMPLE
    yy, xx = (np.mgrid[0:n, 0:n] + 0.5) / SUPERSAMPLE
    period = rng.uniform(16, 32)  # at least two latent cells (8 px) per period
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle) + rng.uniform(0, period)
    v = -xx * np.sin(angle) + yy * np.cos(angle) + rng.uniform(0, period)
    if texture == "plain":
        inside = np.zeros_like(xx, dtype=bool)
    elif texture == "striped":
        inside = (u % period) < period / 2
    elif texture == "checked":
        inside = ((u // (period / 2)) + (v // (period / 2))) % 2 == 1
    elif texture == "dotted":
        du, dv = u % period - period / 2, v % period - period / 2
        inside = du ** 2 + dv ** 2 <= (period / 4) ** 2
    else:  # wavy: parallel sine bands, a quarter of the period thick
        amplitude, wavelength = rng.uniform(3, 6), rng.uniform(24, 48)
        w = u + amplitude * np.sin(2 * np.pi * v / wavelength)
        inside = np.abs(w % period - period / 2) <= period / 8
    return inside.astype(np.float32).reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE).mean(axis=(1, 3))


def glyph_mask(letter: str, rng: np.random.Generator) -> np.ndarray:
    """Coverage in [0, 1] (64×64) of `letter` in Pillow's default font at a random size, tilt and position."""
    from PIL import Image, ImageDraw, ImageFont
    n = SIZE * SUPERSAMPLE
    font = ImageFont.load_default(size=int(rng.uniform(*FONT_SIZES) * SUPERSAMPLE))
    canvas = Image.new("L", (n, n))
    ImageDraw.Draw(canvas).text((n / 2, n / 2), letter, fill=255, font=font, anchor="mm",
                                stroke_width=BOLD * SUPERSAMPLE, stroke_fill=255)
    canvas = canvas.rotate(rng.uniform(-MAX_TILT, MAX_TILT), resample=Image.BILINEAR)
    left, top, right, bottom = canvas.getbbox()
    # move the glyph's box anywhere it fits whole, 2 px from the border
    margin = 2 * SUPERSAMPLE
    dx = rng.uniform(margin - left, max(margin - left, n - margin - right))
    dy = rng.uniform(margin - top, max(margin - top, n - margin - bottom))
    canvas = canvas.transform((n, n), Image.AFFINE, (1, 0, -dx, 0, 1, -dy), resample=Image.BILINEAR)
    mask = np.asarray(canvas, dtype=np.float32) / 255.0
    return mask.reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE).mean(axis=(1, 3))


def render(label, rng: np.random.Generator) -> np.ndarray:
    """One uint8 image (64, 64, 3) of `label`, colours jittered."""
    colour, letter, texture, background = label
    bg = np.array(PALETTE[background], dtype=np.float64) + rng.uniform(-JITTER, JITTER, 3)
    toward = 255.0 if bg.mean() < 128 else 0.0
    tone = bg + TONE * (toward - bg)
    fg = np.array(PALETTE[colour], dtype=np.float64) + rng.uniform(-JITTER, JITTER, 3)
    texture_alpha = texture_mask(texture, rng)[..., None]
    alpha = glyph_mask(letter, rng)[..., None]
    image = alpha * fg + (1 - alpha) * (texture_alpha * tone + (1 - texture_alpha) * bg)
    return np.clip(image, 0, 255).round().astype(np.uint8)


def dataset(count: int, seed: int):
    """(images uint8 (count, 64, 64, 3), labels): labels uniform over `all_labels()`."""
    rng = np.random.default_rng(seed)
    choices = all_labels()
    labels = [choices[i] for i in rng.integers(0, len(choices), count)]
    return np.stack([render(label, rng) for label in labels]), labels
