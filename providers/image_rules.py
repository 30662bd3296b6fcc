"""Facts about images that the intake (``jobs.intake``) and the local renderer
(``providers.local_source``, which reopens the original) must agree on: the size
caps and how an EXIF orientation turns the picture. One copy, so the two can
never frame or refuse the same photo differently."""

from __future__ import annotations

from PIL import Image

# A 40 MP RGBA frame is 160 MB decoded, about what one worker should spend on an upload; it is
# converted and scaled in bands, so the decoded picture is the only full-size copy.
# That bounds PNG, which is decoded whole.
MAX_PIXELS = 40_000_000
# A baseline JPEG is decoded by libjpeg at 1/2 to 1/8 scale when the frame needs fewer pixels,
# so a 48, 50 or 64 MP phone photo costs a few megapixels in memory. Just under Pillow's own
# 89.5 MP bomb warning, which stays a refusal. A progressive JPEG keeps every coefficient of
# the full image in memory whatever the scale, so it gets PNG's cap.
MAX_JPEG_PIXELS = 89_000_000
# Caps the long side separately so a 12000x3 sliver cannot sneak under the pixel count and
# then be scaled up ~1000x to cover the frame.
MAX_SIDE = 12_000

# EXIF orientation -> the transpose that shows the picture upright (ImageOps.exif_transpose's table).
ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
