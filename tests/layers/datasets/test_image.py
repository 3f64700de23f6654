import numpy as np
import pytest
import torch
from PIL import Image

from layers.image import blob_scale, image_to_blob, load_image
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
