"""The picture the local renderer samples: the original upload where it has more pixels.

The normalised frame (1024x576 and the like) is all a camera move that stays
at zoom 1 needs, but a move that zooms in 1.3x upsamples it and the last frame
goes soft. The original upload usually has far more pixels, so the renderer
samples the original instead, framed exactly as the intake framed it (EXIF
orientation applied, then the same centred cover crop, see
``jobs/intake.py``), and decoded once at the size the move needs: a JPEG
through libjpeg's draft mode (1/2, 1/4 or 1/8 scale), so a 48 MP photo costs a
few megapixels, a PNG decoded whole within the intake's pixel caps.

The original is an improvement, never a requirement: when it is missing,
unreadable, over the caps, in a mode this module does not convert (16-bit
grey, say), not larger than the frame, or when a small copy of it does not
match the normalised frame (the check that keeps this module honest about
replicating the intake), the normalised frame is used, as before.
"""

from __future__ import annotations

import io
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from providers.image_rules import MAX_JPEG_PIXELS, MAX_PIXELS, MAX_SIDE, ORIENTATION_TRANSPOSE
from providers.local_render import OVERSAMPLE

try:
    from PIL import ImageCms
except ImportError:  # Pillow without littlecms: colours are then taken as sRGB
    ImageCms = None

log = logging.getLogger(__name__)

# Mean difference (0-255) between a small copy of the framed original and of the
# normalised frame above which the two are taken to differ (wrong crop, colours).
MATCH_TOLERANCE = 6.0
_CHECK_SIZE = 4  # the check compares copies at 1/4 of the frame's size


@dataclass(frozen=True)
class Source:
    """What ``render_clip`` samples: ``image`` and the region of it (``box``) that fills the frame.

    From the original, ``image`` is the framed region already, at the size the
    move needs (up to ``OVERSAMPLE`` times its largest zoom times the output).
    """

    image: Image.Image
    box: tuple[float, float, float, float]
    from_original: bool
    decoded_size: tuple[int, int] | None = None  # the original as decoded (JPEG: at a reduced scale)


def load_normalised(path: Path, size: tuple[int, int]) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        rgb = image.convert("RGB")
    if rgb.size != size:
        # Intake already fits images to the job's size; this is only a guard.
        rgb = ImageOps.fit(rgb, size, Image.Resampling.LANCZOS)
    return rgb


def load_source(normalised_path: Path, original_path: Path | None, size: tuple[int, int], zoom: float) -> Source:
    """The picture for a clip of ``size`` whose camera zooms in up to ``zoom``.

    Raises what opening the normalised frame raises (``OSError``,
    ``UnidentifiedImageError``, ...) when even that cannot be read.
    """
    frame = load_normalised(normalised_path, size)
    whole = _whole(size)
    if original_path is None or zoom <= 1.0 + 1e-6:
        return Source(frame, whole, False)
    try:
        framed = _framed_original(Path(original_path), size, zoom)
    except MemoryError:
        raise
    except Exception as exc:  # any trouble with the original: the frame is enough
        log.warning("original %s not used: %s: %s", original_path, type(exc).__name__, exc)
        return Source(frame, whole, False)
    if framed is None:
        return Source(frame, whole, False)
    image, box = framed
    if not _matches(image, box, frame):
        log.warning("original %s not used: it does not match the normalised frame", original_path)
        return Source(frame, whole, False)
    # Keep only the framed region at the size the renderer's largest level needs,
    # so the decoded original is freed before the first frame.
    scale = min(OVERSAMPLE * zoom, (box[2] - box[0]) / size[0], (box[3] - box[1]) / size[1])
    need = (2 * round(size[0] * scale / 2), 2 * round(size[1] * scale / 2))
    framed_image = image.resize(need, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
    return Source(framed_image, _whole(need), True, image.size)


def _whole(size: tuple[int, int]) -> tuple[float, float, float, float]:
    return (0.0, 0.0, float(size[0]), float(size[1]))


def cover_box(width: int, height: int, target: tuple[int, int]) -> tuple[float, float, float, float]:
    """The centred region of a ``width`` x ``height`` picture that covers ``target`` (the intake's crop)."""
    tw, th = target
    scale = max(tw / width, th / height)
    bw, bh = min(width, tw / scale), min(height, th / scale)
    left, top = (width - bw) / 2, (height - bh) / 2
    return (left, top, left + bw, top + bh)


def _framed_original(path: Path, size: tuple[int, int], zoom: float) -> tuple[Image.Image, tuple] | None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path, formats=["JPEG", "PNG"]) as img:
            stored_w, stored_h = img.size
            progressive = img.format == "JPEG" and bool(img.info.get("progressive"))
            cap = MAX_JPEG_PIXELS if img.format == "JPEG" and not progressive else MAX_PIXELS
            if stored_w * stored_h > cap or max(stored_w, stored_h) > MAX_SIDE:
                return None
            orientation = _orientation(img)
            turned = orientation in (5, 6, 7, 8)
            width, height = (stored_h, stored_w) if turned else (stored_w, stored_h)
            left, _, right, _ = cover_box(width, height, size)
            # Source pixels per output pixel at zoom 1; more than 1 means the original has pixels to give.
            has = (right - left) / size[0]
            if has <= 1.01:
                return None
            if img.format == "JPEG":
                # Decode at the smallest scale that still has ``zoom`` pixels per output pixel.
                fraction = min(1.0, zoom / has)
                need = (math.ceil(width * fraction), math.ceil(height * fraction))
                img.draft(img.mode, (need[1], need[0]) if turned else need)
            img.load()
            icc = img.info.get("icc_profile")
            picture = _rgb(img, icc)
            if picture is None:
                return None
    transpose = ORIENTATION_TRANSPOSE.get(orientation)
    if transpose is not None:
        picture = picture.transpose(transpose)
    return picture, cover_box(picture.width, picture.height, size)


def _orientation(img: Image.Image) -> int:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            value = img.getexif().get(0x0112, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and value in range(1, 9) else 1


def _rgb(img: Image.Image, icc: bytes | None) -> Image.Image | None:
    """sRGB RGB with transparency flattened onto white, as the intake makes it; None for modes it does not handle."""
    mode = img.mode
    if img.info.get("transparency") is not None or mode in ("P", "PA", "LA", "La", "RGBA", "RGBa"):
        base = "L" if mode in ("L", "LA", "La", "1") else "RGB"
        rgba = img.convert(base + "A")
        flat = Image.new(base, img.size, 255 if base == "L" else (255, 255, 255))
        flat.paste(rgba.convert(base), mask=rgba.getchannel("A"))
        img = flat
    elif mode == "1":
        img = img.convert("L")
    elif mode not in ("L", "RGB", "CMYK"):
        return None  # 16-bit and other rare modes: the normalised frame is used
    if icc and ImageCms is not None:
        try:
            converted = ImageCms.profileToProfile(
                img,
                ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")),
                renderingIntent=ImageCms.Intent.PERCEPTUAL,
                outputMode="RGB",
            )
            if converted is not None:
                return converted
        except Exception:  # a broken profile only costs colour accuracy, as at intake
            pass
    return img if img.mode == "RGB" else img.convert("RGB")


def _matches(image: Image.Image, box: tuple, frame: Image.Image) -> bool:
    small = (max(1, frame.width // _CHECK_SIZE), max(1, frame.height // _CHECK_SIZE))
    ours = np.asarray(image.resize(small, Image.Resampling.BOX, box=box, reducing_gap=2.0), dtype=np.int16)
    theirs = np.asarray(frame.resize(small, Image.Resampling.BOX), dtype=np.int16)
    return float(np.abs(ours - theirs).mean()) <= MATCH_TOLERANCE
