"""The captioned shapes data set for tiny-sd, and the deterministic analyser that grades images.

Every image is a single filled shape on a plain background. Captions are plain English built
from the same attributes, so the analyser can check a generated image against its caption.
"""
import math
import random

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64

# Colours are far apart in RGB so that the analyser's nearest-colour rule is unambiguous.
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "purple": (140, 40, 180),
    "orange": (250, 140, 20),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
FOREGROUNDS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
BACKGROUNDS = ["white", "black", "blue", "yellow", "green", "gray"]
COLOURS["gray"] = (128, 128, 128)
SHAPES = ["circle", "square", "triangle", "cross"]
SIZES = {"small": 9, "medium": 14, "large": 20}  # half-extent in pixels
POSITIONS = {
    "center": (0.5, 0.5),
    "top left": (0.3, 0.3),
    "top right": (0.7, 0.3),
    "bottom left": (0.3, 0.7),
    "bottom right": (0.7, 0.7),
}


def sample_attributes(rng: random.Random) -> dict:
    fg = rng.choice(FOREGROUNDS)
    bg = rng.choice([b for b in BACKGROUNDS if b != fg])
    return {
        "fg": fg,
        "bg": bg,
        "shape": rng.choice(SHAPES),
        "size": rng.choice(list(SIZES)),
        "position": rng.choice(list(POSITIONS)),
    }


def caption(attrs: dict, rng: random.Random | None = None, template: int | None = None) -> str:
    """A caption in one of several templates. The colour and shape are always named; the
    background, size and position are named in most templates."""
    fg, bg, shape, size, pos = attrs["fg"], attrs["bg"], attrs["shape"], attrs["size"], attrs["position"]
    templates = [
        f"a {fg} {shape} on a {bg} background",
        f"a {size} {fg} {shape} on a {bg} background",
        f"a {fg} {shape} at the {pos} on a {bg} background",
        f"a {size} {fg} {shape} at the {pos} on a {bg} background",
        f"{bg} background with a {fg} {shape}",
        f"a {fg} {shape} at the {pos}",
        f"a {size} {fg} {shape}",
    ]
    if pos == "center":
        templates[2] = f"a {fg} {shape} in the center on a {bg} background"
        templates[3] = f"a {size} {fg} {shape} in the center on a {bg} background"
        templates[5] = f"a {fg} {shape} in the center"
    if template is None:
        assert rng is not None
        # The last two templates leave the background unsaid; keep them rare.
        template = rng.choices(range(len(templates)), weights=[4, 3, 3, 3, 2, 1, 1])[0]
    return templates[template]


def render(attrs: dict, rng: random.Random, size: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE)) -> Image.Image:
    """The scene on a canvas of `size` (width, height): the shape's extent scales with the
    shorter side, its position with each side."""
    width, height = size
    img = Image.new("RGB", (width, height), COLOURS[attrs["bg"]])
    draw = ImageDraw.Draw(img)
    r = SIZES[attrs["size"]] * min(width, height) / IMAGE_SIZE * rng.uniform(0.9, 1.1)
    cx, cy = POSITIONS[attrs["position"]]
    cx = cx * width + rng.uniform(-3, 3)
    cy = cy * height + rng.uniform(-3, 3)
    # Keep the shape inside the frame.
    cx = min(max(cx, r + 1), width - r - 1)
    cy = min(max(cy, r + 1), height - r - 1)
    fill = COLOURS[attrs["fg"]]
    shape = attrs["shape"]
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
    elif shape == "cross":
        w = r / 3
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
    else:
        raise ValueError(shape)
    return img


def nearest_colour(rgb: np.ndarray, names: list[str]) -> str:
    best, best_d = names[0], math.inf
    for name in names:
        d = float(np.sum((rgb - np.array(COLOURS[name], dtype=np.float64)) ** 2))
        if d < best_d:
            best, best_d = name, d
    return best


def analyse(img: np.ndarray) -> dict:
    """Grade an HxWx3 uint8 image: background colour from the border, foreground colour from the
    pixels far from the background, shape class from the foreground mask's geometry."""
    h, w, _ = img.shape
    px = img.astype(np.float64)
    border = np.concatenate([px[0, :], px[-1, :], px[:, 0], px[:, -1]])
    bg_rgb = np.median(border, axis=0)
    bg = nearest_colour(bg_rgb, BACKGROUNDS)
    dist = np.sqrt(np.sum((px - bg_rgb) ** 2, axis=2))
    mask = dist > 80
    if mask.sum() < 12:
        return {"bg": bg, "fg": None, "shape": None}
    fg = nearest_colour(np.median(px[mask], axis=0), FOREGROUNDS)
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    box = mask[y0:y1, x0:x1]
    fill = box.mean()
    top, bottom = box[: box.shape[0] // 2].sum(), box[(box.shape[0] + 1) // 2 :].sum()
    asym = (bottom - top) / max(1, bottom + top)
    corners = [box[0, 0], box[0, -1], box[-1, 0], box[-1, -1]]
    if asym > 0.25:
        shape = "triangle"
    elif fill > 0.9 and all(corners):
        shape = "square"
    elif fill > 0.68:
        shape = "circle"
    else:
        shape = "cross"
    return {"bg": bg, "fg": fg, "shape": shape}


def grade(images, heldout) -> dict:
    """The share of images whose analysed foreground colour, background colour and shape are their caption's."""
    hits = {"fg": 0, "bg": 0, "shape": 0}
    for (attrs, _), img in zip(heldout, images):
        got = analyse(img)
        for k in hits:
            hits[k] += got[k] == attrs[k]
    return {k: v / len(heldout) for k, v in hits.items()}


def build_split(n_train: int, n_heldout: int, seed: int):
    """Held-out captions name colour, shape and background, and their full attribute tuples
    (shape, colours, size, position) never occur in training."""
    rng = random.Random(seed)
    heldout, keys = [], set()
    while len(heldout) < n_heldout:
        attrs = sample_attributes(rng)
        key = tuple(sorted(attrs.items()))
        if key in keys:
            continue
        keys.add(key)
        heldout.append((attrs, caption(attrs, template=rng.choice([0, 1, 2, 3, 4]))))
    train = []
    while len(train) < n_train:
        attrs = sample_attributes(rng)
        if tuple(sorted(attrs.items())) in keys:
            continue
        img = render(attrs, rng)
        train.append((np.asarray(img, dtype=np.uint8), caption(attrs, rng)))
    return train, heldout


def self_check(seed: int = 0, n: int = 400) -> float:
    """The analyser's accuracy on rendered (ground-truth) images: it must be near 1."""
    rng = random.Random(seed)
    ok = 0
    for _ in range(n):
        attrs = sample_attributes(rng)
        got = analyse(np.asarray(render(attrs, rng)))
        ok += got["fg"] == attrs["fg"] and got["bg"] == attrs["bg"] and got["shape"] == attrs["shape"]
    return ok / n


if __name__ == "__main__":
    print("analyser accuracy on rendered images:", self_check())
