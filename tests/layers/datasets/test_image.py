import numpy as np
import pytest
import torch
from PIL import Image

from pyfrcnn_layers.image import blob_scale, image_to_blob, load_image
from pyfrcnn.errors import DataError

RED, GREEN = (255, 0, 0), (0, 128, 0)


def save(tmp_path, name, image, **kw):
    path = tmp_path / name
    image.save(path, **kw)
    return path


def test_rgb_becomes_bgr(tmp_path):
    pixels = np.array([[RED, GREEN]], dtype=np.uint8)
    im = load_image(save(tmp_path, "x.png", Image.fromarray(pixels)))
    assert im.dtype == np.uint8 and im.shape == (1, 2, 3)
    assert im.tolist() == [[[0, 0, 255], [0, 128, 0]]]


def test_modes_are_converted(tmp_path):
    gray = load_image(save(tmp_path, "g.png", Image.fromarray(np.array([[7, 200]], np.uint8))))
    assert gray.tolist() == [[[7, 7, 7], [200, 200, 200]]]
    rgba = Image.fromarray(np.array([[[10, 20, 30, 0]]], np.uint8), "RGBA")
    assert load_image(save(tmp_path, "a.png", rgba)).tolist() == [[[30, 20, 10]]]
    palette = Image.fromarray(np.array([[0, 1]], np.uint8), "P")
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.info["transparency"] = 0
    assert load_image(save(tmp_path, "p.png", palette)).tolist() == [[[0, 0, 255], [255, 0, 0]]]
    cmyk = Image.new("CMYK", (1, 1), (0, 255, 255, 0))  # red
    assert load_image(save(tmp_path, "c.tif", cmyk)).tolist() == [[[0, 0, 255]]]
    deep = Image.fromarray(np.array([[0x1234, 0xFFFF]], np.uint16))  # 16-bit: keep the high byte
    assert load_image(save(tmp_path, "d.png", deep)).tolist() == [[[0x12] * 3, [0xFF] * 3]]
    bilevel = Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1")
    assert load_image(save(tmp_path, "b.png", bilevel)).tolist() == [[[0] * 3, [255] * 3]]


def test_bad_files_are_data_errors_naming_them(tmp_path):
    with pytest.raises(DataError, match=r"nothere\.jpg: image file not found"):
        load_image(tmp_path / "nothere.jpg")
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(DataError, match=r"junk\.jpg: cannot read image"):
        load_image(junk)
    whole = save(tmp_path, "whole.jpg", Image.fromarray(
        np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(whole.read_bytes()[:600])
    with pytest.raises(DataError, match=r"truncated\.jpg: cannot read image"):
        load_image(truncated)
    with pytest.raises(DataError, match=r"whole\.jpg: image is 64x64 pixels, more than the 1000"):
        load_image(whole, max_pixels=1000)


def test_scale_rule_matches_prep_im_for_blob():
    assert blob_scale(375, 500, 600, 1000) == 1.6                 # shorter side -> 600
    assert blob_scale(300, 1000, 600, 1000) == 1.0                # longer side capped at 1000
    assert blob_scale(500, 833, 600, 1000) == 1.2                 # round(999.6) = 1000: not capped
    assert blob_scale(500, 834, 600, 1000) == 1000 / 834          # round(1000.8) = 1001: capped


def test_blob_of_a_tiny_image_by_hand():
    # A 2 x 2 image doubled. Bilinear with pixel centres at +0.5 samples the source at
    # -0.25 (edge), 0.25, 0.75, 1.25 (edge): weights (1, 0), (.75, .25), (.25, .75), (0, 1).
    im = np.zeros((2, 2, 3), np.uint8)
    im[:, :, 0] = [[0, 40], [80, 120]]          # blue
    im[:, :, 1] = 10                            # green
    im[:, :, 2] = [[100, 100], [200, 200]]      # red
    blob, scale = image_to_blob(im, target_size=4, max_size=100, pixel_means=(1.0, 10.0, 100.0))
    assert scale == 2.0 and blob.dtype == torch.float32 and blob.shape == (1, 3, 4, 4)
    blue = [[0, 10, 30, 40], [20, 30, 50, 60], [60, 70, 90, 100], [80, 90, 110, 120]]
    red = [[0] * 4, [25] * 4, [75] * 4, [100] * 4]
    expected = torch.tensor(np.stack([np.array(blue) - 1.0, np.zeros((4, 4)), red]),
                            dtype=torch.float32)
    torch.testing.assert_close(blob[0], expected)


def test_blob_keeps_size_when_scale_is_one():
    im = np.random.default_rng(1).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    blob, scale = image_to_blob(im, 6, 100, (1.5, 2.5, 3.5))
    assert scale == 1.0
    expected = torch.from_numpy(im.astype(np.float32) - np.array([1.5, 2.5, 3.5], np.float32))
    torch.testing.assert_close(blob[0], expected.permute(2, 0, 1))


def test_blob_size_rounds_as_cv2():
    im = np.zeros((375, 500, 3), np.uint8)
    blob, scale = image_to_blob(im, 600, 1000, (0, 0, 0))
    assert blob.shape == (1, 3, 600, 800) and scale == 1.6
    blob, scale = image_to_blob(np.zeros((3, 5, 3), np.uint8), 5, 100, (0, 0, 0))
    assert blob.shape == (1, 3, 5, 8)  # 5 * 5/3 = 8.33 -> 8


# py-faster-rcnn's prep_im_for_blob resizes the float32 image minus PIXEL_MEANS
PIXEL_MEANS = (102.9801, 115.9465, 122.7717)
# (height, width, target_size, max_size): VOC-like sizes at 600 / 1000 (the third
# capped by the longer side), and down- and upscales by uneven factors
RESIZES = [(375, 500, 600, 1000), (333, 500, 600, 1000), (500, 834, 600, 1000),
           (480, 640, 370, 1000), (61, 83, 145, 1000), (300, 700, 90, 1000)]


def textured_image(height, width, seed):
    """A real-looking test image: smooth shading, stripes at several frequencies and
    angles, hard-edged discs and rectangles, and sensor-like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = []
    for c in range(3):
        v = 90 + 60 * np.sin(x / rng.uniform(20, 60) + c) * np.cos(y / rng.uniform(15, 50))
        angle, period = rng.uniform(0, np.pi), rng.uniform(2.5, 9)
        v += 40 * np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period)
        channels.append(v)
    im = np.stack(channels, axis=2)
    for _ in range(6):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(5, 40)
        im[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
        x0, y0 = int(rng.uniform(0, width)), int(rng.uniform(0, height))
        im[y0:y0 + int(rng.uniform(3, 30)), x0:x0 + int(rng.uniform(3, 30))] = rng.uniform(0, 255, 3)
    im += rng.normal(0, 6, im.shape)
    return np.clip(np.rint(im), 0, 255).astype(np.uint8)


def cv2_linear_axis(in_size, out_size, scale):
    """cv2.resize INTER_LINEAR's taps and weights along one axis (resize.cpp): the
    source position (d + 0.5) / scale - 0.5 rounded to float32, its floor and
    fraction; left of the first pixel or on / right of the last, one tap of weight 1."""
    taps = []
    for d in range(out_size):
        f = float(np.float32((d + 0.5) * (1.0 / scale) - 0.5))
        s = int(np.floor(f))
        f = float(np.float32(f - s))
        if s < 0:
            s, f = 0, 0.0
        if s >= in_size - 1:
            s, f = in_size - 1, 0.0
        taps.append((s, min(s + 1, in_size - 1), 1.0 - f, f))
    return taps


def cv2_linear_resize_reference(im, scale):
    """A slow, obvious cv2.INTER_LINEAR of an H x W x C float image with fx = fy = scale:
    rows first, then columns, as cv2's separable passes."""
    height, width = im.shape[:2]
    out_h, out_w = int(round(height * scale)), int(round(width * scale))
    rows = np.empty((height, out_w, im.shape[2]), np.float64)
    for d, (s0, s1, w0, w1) in enumerate(cv2_linear_axis(width, out_w, scale)):
        rows[:, d] = im[:, s0] * w0 + im[:, s1] * w1
    out = np.empty((out_h, out_w, im.shape[2]), np.float64)
    for d, (s0, s1, w0, w1) in enumerate(cv2_linear_axis(height, out_h, scale)):
        out[d] = rows[s0] * w0 + rows[s1] * w1
    return out


@pytest.mark.parametrize("height,width,target_size,max_size", RESIZES)
def test_blob_resamples_as_cv2_inter_linear(height, width, target_size, max_size):
    im = textured_image(height, width, seed=height)
    blob, im_scale = image_to_blob(im, target_size, max_size, PIXEL_MEANS)
    expected = cv2_linear_resize_reference(im.astype(np.float32) - np.float32(PIXEL_MEANS), im_scale)
    got = blob[0].permute(1, 2, 0).double().numpy()
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 0.02


@pytest.mark.parametrize("height,width,target_size,max_size", RESIZES)
def test_blob_equals_opencv(height, width, target_size, max_size):
    cv2 = pytest.importorskip("cv2")
    im = textured_image(height, width, seed=height + 1)
    blob, im_scale = image_to_blob(im, target_size, max_size, PIXEL_MEANS)
    got = blob[0].permute(1, 2, 0).numpy()
    # py-faster-rcnn's own call, on the float32 image minus the means
    floats = im.astype(np.float32) - np.float32(PIXEL_MEANS)
    expected = cv2.resize(floats, None, None, fx=im_scale, fy=im_scale, interpolation=cv2.INTER_LINEAR)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 0.02
    # cv2's 8-bit path (11-bit fixed-point weights, rounded to integers) is within a grey level
    eight_bit = cv2.resize(im, None, None, fx=im_scale, fy=im_scale, interpolation=cv2.INTER_LINEAR)
    assert np.abs(got - (eight_bit.astype(np.float32) - np.float32(PIXEL_MEANS))).max() <= 1.0
