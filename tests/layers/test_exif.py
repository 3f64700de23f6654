"""Every image loader applies the EXIF orientation, as a photo viewer does."""

import numpy as np
from PIL import Image

from pyfrcnn_layers.image import load_image, oriented_size


def rotated_photo(path):
    """A 40x20 image stored sideways with orientation 6 (turn 90 degrees clockwise to view)."""
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :10] = (255, 0, 0)  # red on the left of the stored image
    im = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(path, exif=exif, quality=95)
    return im


def test_load_image_turns_the_image_upright(tmp_path):
    path = tmp_path / "photo.jpg"
    rotated_photo(path)
    im = load_image(path)
    assert im.shape == (40, 20, 3)           # viewed: 20 wide, 40 high
    assert im[:10, :, 2].mean() > 200        # the stored left edge is the viewed top (BGR: red last)
    assert im[-10:, :, 2].mean() < 50
    with Image.open(path) as pil:
        assert oriented_size(pil) == (20, 40)


def test_labels_scale_with_the_image():
    from PIL import ImageDraw

    from pyfrcnn_layers.evaluation.draw import label_font

    def text_height(size):
        font = label_font(size)
        box = ImageDraw.Draw(Image.new("RGB", (10, 10))).textbbox((0, 0), "cat 0.99", font=font)
        return box[3] - box[1]

    assert text_height((4000, 3000)) >= 4 * text_height((300, 200)) > 0
