"""Boxes and labels drawn on an image with Pillow, for a look at detections.

Boxes are (x1, y1, x2, y2) with inclusive corners, so the outline covers the
box's own edge pixels. Each class gets a fixed colour; the label ("name 0.93")
sits on a filled tab above the box, or inside it at the top of the image.
"""

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def class_color(index):
    """A saturated RGB colour for class `index`, stable across runs."""
    hue = (index * 0.618033988749895) % 1.0  # golden-ratio steps spread neighbours apart
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def label_font(image_size):
    """A font whose height scales with the image (about 1/40 of its short side,
    at least 11 px); the bitmap default where Pillow has no FreeType."""
    size = max(11, round(min(image_size) / 40))
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1, or built without FreeType
        return ImageFont.load_default()


def draw_detections(im_bgr, detections, class_index=None):
    """A PIL RGB image of `im_bgr` (H x W x 3 uint8 BGR) with `detections` drawn:
    an iterable of (class name, [x1, y1, x2, y2], score). `class_index` maps a
    name to its colour index (default: order of first appearance)."""
    image = Image.fromarray(np.ascontiguousarray(im_bgr[:, :, ::-1]))
    draw = ImageDraw.Draw(image)
    font = label_font(image.size)
    width = max(2, round(min(image.size) / 250))
    colors = dict(class_index or {})
    for name, bbox, score in detections:
        if name not in colors:
            colors[name] = len(colors) + 1
        color = class_color(colors[name])
        x1, y1, x2, y2 = (float(v) for v in bbox)
        draw.rectangle([x1, y1, x2, y2], outline=color, width=width)
        label = f"{name} {score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        text_w, text_h = right - left + 4, bottom - top + 4
        tab_y = y1 - text_h if y1 - text_h >= 0 else y1
        draw.rectangle([x1, tab_y, x1 + text_w, tab_y + text_h], fill=color)
        draw.text((x1 + 2 - left, tab_y + 2 - top), label, fill=(255, 255, 255), font=font)
    return image


__all__ = ["class_color", "draw_detections"]
