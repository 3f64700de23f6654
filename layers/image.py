"""Images: decoding to BGR uint8 and py-faster-rcnn's blob preparation.

load_image(path) -> H x W x 3 uint8, BGR (the channel order of cv2.imread,
which py-faster-rcnn's PIXEL_MEANS and pretrained VGG16 weights assume).
Pillow decodes; every mode is converted to 8-bit RGB first:
  L, 1, P, PA, LA, RGBA, CMYK, YCbCr, ... -> Pillow's own conversion (alpha dropped)
  I;16*, I (16-bit PNG / TIFF)            -> value >> 8, as cv2.imread does
  F (32-bit float)                        -> clipped to 0..255 and rounded
The EXIF orientation tag is ignored: annotations count pixels as stored.
Images above MAX_PIXELS (40 megapixels) are refused: a decompression-bomb
guard, and such a frame already needs 120 MB as uint8, 480 MB as float.
Missing, corrupt or truncated files raise DataError naming the file.

image_to_blob(im_bgr, target_size, max_size, pixel_means) -> (1 x 3 x H' x W'
float32, im_scale), py-faster-rcnn's prep_im_for_blob: subtract the means in
float, scale the shorter side to target_size unless the longer side would
then exceed max_size (the test uses the rounded size, as there), resize.

Resampling is cv2.resize(im, None, fx=im_scale, fy=im_scale,
interpolation=cv2.INTER_LINEAR) on that float32 image, as py-faster-rcnn
calls it: H' = round(H * im_scale) and output pixel d samples the input at
(d + 0.5) / im_scale - 0.5 (im_scale itself, not the ratio of the rounded
sizes), edge pixels repeated, two-tap linear weights in float (cv2 uses its
11-bit fixed-point weights only for 8-bit images; py-faster-rcnn resizes
after the float mean subtraction). torch's bilinear kernel does exactly that
when handed the scales along with the size; it matches cv2 to about 0.01 of a
grey level (tests/layers/datasets/test_image.py), and the 8-bit cv2 resize of
the same image to within 1.
"""

import os

import numpy as np
import torch
from PIL import Image, ImageOps

from pyfrcnn.errors import DataError

MAX_PIXELS = 40_000_000

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


EXIF_ORIENTATION = 0x0112
TURNED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def oriented_size(im):
    """(width, height) of a PIL image once its EXIF orientation is applied."""
    width, height = im.size
    try:
        turned = im.getexif().get(EXIF_ORIENTATION) in TURNED
    except Exception:  # an unreadable EXIF block orients nothing
        turned = False
    return (height, width) if turned else (width, height)


def load_image(path, max_pixels=MAX_PIXELS):
    """The image at `path` as an H x W x 3 uint8 BGR array."""
    path = os.fspath(path)
    try:
        with Image.open(path) as im:
            width, height = im.size
            if width * height > max_pixels:
                raise DataError(f"{path}: image is {width}x{height} pixels, more than the "
                                f"{max_pixels} this loader accepts")
            im.load()
            rgb = _to_rgb8(ImageOps.exif_transpose(im), path)  # as a camera's viewer shows it
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except Image.DecompressionBombError as e:
        raise DataError(f"{path}: image too large: {e}") from None
    except Exception as e:  # Pillow signals corrupt data with many exception types
        raise DataError(f"{path}: cannot read image: {type(e).__name__}: {e}") from None
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise DataError(f"{path}: image has no pixels")
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _to_rgb8(im, path):
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im)
    if mode in _SIXTEEN_BIT:
        gray = (np.clip(np.asarray(im, dtype=np.int64), 0, 65535) >> 8).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        gray = np.clip(np.rint(np.asarray(im, dtype=np.float32)), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("P", "PA"):
        im = im.convert("RGBA")  # palette transparency comes out as alpha, then dropped
    try:
        return np.asarray(im.convert("RGB"))
    except ValueError:
        raise DataError(f"{path}: unsupported image mode '{mode}'") from None


def blob_scale(height, width, target_size, max_size):
    """py-faster-rcnn's im_scale: shorter side -> target_size, longer side <= max_size."""
    size_min, size_max = min(height, width), max(height, width)
    scale = float(target_size) / float(size_min)
    if round(scale * size_max) > max_size:
        scale = float(max_size) / float(size_max)
    return scale


def cv2_linear_resize(blob, scale, out_h, out_w):
    """N x C x H x W float blob resized to N x C x out_h x out_w as cv2.INTER_LINEAR
    with fx = fy = scale. F.interpolate cannot take both a size and a scale; the
    aten op under it does, and then maps output to input with the scale given."""
    return torch.ops.aten.upsample_bilinear2d(blob, [out_h, out_w], False, scale, scale)


def image_to_blob(im_bgr, target_size, max_size, pixel_means):
    """(1 x 3 x H' x W' float32 tensor of BGR minus pixel_means, im_scale)."""
    height, width = im_bgr.shape[:2]
    scale = blob_scale(height, width, target_size, max_size)
    # cv2.resize's size for fx = fy = scale (round half to even, as cvRound).
    out_h, out_w = max(1, int(round(height * scale))), max(1, int(round(width * scale)))
    blob = torch.from_numpy(np.ascontiguousarray(im_bgr)).permute(2, 0, 1).unsqueeze(0).float()
    means = torch.tensor(pixel_means, dtype=torch.float32).view(1, 3, 1, 1)
    blob = blob - means
    if (out_h, out_w) != (height, width):
        blob = cv2_linear_resize(blob, scale, out_h, out_w)
    return blob.contiguous(), scale


__all__ = ["MAX_PIXELS", "load_image", "image_to_blob", "blob_scale", "cv2_linear_resize"]
