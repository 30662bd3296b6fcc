"""Image intake: turn an uploaded still into one clean, fixed-size frame, or refuse it.

Everything downstream (providers, the local animator, thumbnails) gets the same thing: an RGB
PNG of exactly one of the supported sizes, with no metadata. So the rules from the design
("Inputs and limits") live here and nowhere else:

- JPEG or PNG *by content*. The filename and the client's Content-Type are ignored, because
  both are chosen by whoever uploads.
- At most ``MAX_UPLOAD_BYTES`` (10 MiB by default). Streams are read only up to the cap plus
  one byte, so an oversized upload costs the cap, not its own size.
- Pixel dimensions are checked from the header before anything is decoded, because a PNG of a
  few kilobytes can claim gigapixels (a decompression bomb).
- Damaged files are refused instead of being silently padded with grey.
- EXIF orientation is applied (phones store portraits sideways), colours are brought to sRGB
  when the file carries an ICC profile, transparency is flattened onto white, and all
  metadata (EXIF with GPS position, XMP, comments, profiles) is dropped.
- The frame is fitted by *cover*: scaled until it fills the target, then centre-cropped. The
  alternative, letterboxing, would put bars into every generated video; cropping loses only
  the edges, which camera moves on a still tend to push out of frame anyway.

Refusals are ``ImageRejected`` with a short machine ``code`` and a ``message`` written for the
person who uploaded the file. The codes are: ``empty``, ``too_large``, ``not_an_image``,
``unsupported_format``, ``too_many_pixels``, ``too_many_scans``, ``truncated``, ``corrupt``, ``bad_framing``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import io
import math
import re
import struct
import warnings
from dataclasses import dataclass, field
from typing import BinaryIO

from PIL import Image, ImageFile

from providers.image_rules import MAX_JPEG_PIXELS, MAX_PIXELS, MAX_SIDE, ORIENTATION_TRANSPOSE

try:
    from PIL import ImageCms
except ImportError:  # Pillow built without littlecms: colours are then taken as sRGB.
    ImageCms = None

DEFAULT_MAX_BYTES = 10 * 1024 * 1024

# The caps the local renderer also applies (providers.image_rules); a PNG is decoded whole and
# converted and scaled in bands, so the decoded picture is the only full-size copy (_fit), and
# a baseline JPEG is decoded at a reduced scale when the frame needs fewer pixels
# (_draft_for_target).
# Each scan of a progressive JPEG is another pass over the whole image; encoders write about
# ten. Thousands of tiny scans make a small file that takes minutes to decode.
MAX_JPEG_SCANS = 100

FRAMINGS: dict[str, tuple[int, int]] = {
    "landscape": (1024, 576),
    "portrait": (576, 1024),
    "square": (768, 768),
}

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Pillow names a multi-picture JPEG (some cameras, iPhone portrait shots) "MPO"; its first
# picture is an ordinary JPEG, which is what we read.
_PILLOW_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG"}

_EXIF_ORIENTATION = 0x0112

_READ_CHUNK = 1024 * 1024


class ImageRejected(Exception):
    """An upload we will not use, with a reason the uploader can act on.

    ``code`` is stable and meant for programs (API error bodies, metrics); ``message`` is a
    sentence meant for people and may be reworded.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ImageRejected(code={self.code!r}, message={self.message!r})"


@dataclass(frozen=True)
class NormalizedImage:
    """The accepted upload: facts about the original plus the frame the pipeline will use.

    ``sha256`` and ``size_bytes`` describe the bytes as uploaded (for de-duplication and
    support); ``source_width``/``source_height`` are the picture as a person sees it, i.e.
    after EXIF rotation; ``width``/``height`` are the frame's size, one of ``FRAMINGS``.
    """

    format: str
    sha256: str
    size_bytes: int
    source_width: int
    source_height: int
    width: int
    height: int
    png_bytes: bytes = field(repr=False)

    @property
    def framing(self) -> str:
        """The name of the framing the frame was fitted to, e.g. ``"landscape"``."""
        for name, size in FRAMINGS.items():
            if size == (self.width, self.height):
                return name
        return f"{self.width}x{self.height}"


def parse_framing(value: str) -> tuple[int, int]:
    """Map a framing as users and API clients write it to a target size.

    Accepts the names in ``FRAMINGS`` and the sizes spelt out ("1024x576", also with "X" or
    a multiplication sign), so forms can send either. Public so callers can refuse a bad
    framing before they read the upload.
    """
    text = value.strip().lower()
    if text in FRAMINGS:
        return FRAMINGS[text]
    match = re.fullmatch(r"(\d+)\s*[x\u00d7*]\s*(\d+)", text)
    if match:
        size = (int(match[1]), int(match[2]))
        if size in FRAMINGS.values():
            return size
    allowed = ", ".join(f"{name} ({w}x{h})" for name, (w, h) in FRAMINGS.items())
    raise ImageRejected("bad_framing", f"Unknown framing {value!r}. Choose one of: {allowed}.")


def nearest_framing(width: int, height: int) -> tuple[int, int]:
    """The supported size whose shape is closest to ``width`` x ``height``.

    Compared on log aspect ratio so that "twice as wide" and "twice as tall" count as equally
    far from square. 4:3 and 3:4, the commonest photo shapes, sit exactly halfway between
    square and 16:9; ties go to the wide or tall framing, which keeps the picture's
    orientation and is the usual shape of a video.
    """
    aspect = math.log(width / height)

    def distance(size: tuple[int, int]) -> tuple[float, bool]:
        return round(abs(math.log(size[0] / size[1]) - aspect), 9), size[0] == size[1]

    return min(FRAMINGS.values(), key=distance)


def sniff_format(head: bytes) -> str | None:
    """Name the format ``head`` (the first bytes of a file) announces: "JPEG", "PNG" or None.

    The cheap first gate, before Pillow parses anything; Pillow is then restricted to the
    same format, so the magic bytes and Pillow's reading must agree.
    """
    if head.startswith(_JPEG_MAGIC):
        return "JPEG"
    if head.startswith(_PNG_MAGIC):
        return "PNG"
    return None


def normalize_image(
    source: bytes | BinaryIO,
    *,
    framing: str | None = None,
    max_bytes: int | None = None,
) -> NormalizedImage:
    """Validate an upload and produce the frame every provider receives.

    ``source`` is the uploaded bytes or a binary stream (read from its current position, at
    most ``max_bytes`` + 1 bytes). ``framing`` is a name or size from ``FRAMINGS``; without it
    the framing nearest the picture's own shape is used. ``max_bytes`` defaults to the
    ``MAX_UPLOAD_BYTES`` setting.

    Raises ``ImageRejected`` for anything wrong with the upload; no other exception should
    escape for any input bytes.
    """
    target = parse_framing(framing) if framing is not None else None
    limit = _resolve_max_bytes(max_bytes)
    data = _read_capped(source, limit)
    if not data:
        raise ImageRejected("empty", "The file is empty (0 bytes). Choose a JPEG or PNG image and upload it again.")

    fmt = sniff_format(data[:16])
    if fmt is None:
        raise _describe_refusal(data)

    try:
        frame, source_size, target = _decode_and_fit(data, fmt, target)
    finally:
        # Only here is the decoded picture gone (a closed Pillow image keeps its pixels).
        give_memory_back()
    return NormalizedImage(
        format=fmt,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        source_width=source_size[0],
        source_height=source_size[1],
        width=target[0],
        height=target[1],
        png_bytes=frame,
    )


# --- reading ------------------------------------------------------------------------------


def _resolve_max_bytes(max_bytes: int | None) -> int:
    if max_bytes is None:
        # Read lazily so this module imports (and works) without Django configured.
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

        try:
            max_bytes = int(getattr(settings, "MAX_UPLOAD_BYTES", DEFAULT_MAX_BYTES))
        except ImproperlyConfigured:
            max_bytes = DEFAULT_MAX_BYTES
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    return max_bytes


def _read_capped(source: bytes | BinaryIO, limit: int) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if len(data) > limit:
            raise _too_large(limit, len(data))
        return data

    declared = _declared_size(source)
    if declared is not None and declared > limit:
        # Django's UploadedFile knows its size: refuse without reading a byte.
        raise _too_large(limit, declared)

    buf = bytearray()
    while len(buf) <= limit:
        chunk = source.read(min(_READ_CHUNK, limit + 1 - len(buf)))
        if not chunk:
            break
        buf += chunk
    if len(buf) > limit:
        raise _too_large(limit, _stream_total_size(source))
    return bytes(buf)


def _declared_size(source: BinaryIO) -> int | None:
    size = getattr(source, "size", None)
    return size if isinstance(size, int) and not isinstance(size, bool) else None


def _stream_total_size(source: BinaryIO) -> int | None:
    """The whole upload's size for the error message, if the stream can tell without reading."""
    declared = _declared_size(source)
    if declared is not None:
        return declared
    try:
        if source.seekable():
            here = source.tell()
            end = source.seek(0, io.SEEK_END)
            source.seek(here)
            return end
    except (AttributeError, OSError, ValueError):
        pass
    return None


def _too_large(limit: int, actual: int | None) -> ImageRejected:
    cap = _human_size(limit, exact=True)
    if actual is None:
        return ImageRejected("too_large", f"The file is larger than {cap}; images must be {cap} or smaller.")
    return ImageRejected("too_large", f"The file is {_human_size(actual)}; images must be {cap} or smaller.")


def _human_size(n: int, *, exact: bool = False) -> str:
    # Binary units under decimal names: "10 MB" is how people say 10 MiB.
    for unit, factor in (("MB", 1024 * 1024), ("KB", 1024)):
        if n >= factor:
            value = n / factor
            if exact and value == int(value):
                return f"{int(value)} {unit}"
            return f"{value:.1f} {unit}"
    return f"{n} bytes"


# --- recognising what was uploaded instead ------------------------------------------------

# (prefix test, what to call it). Raster formats people might reasonably export, which can be
# converted: refused as unsupported, with a hint to re-save.
_OTHER_IMAGE_FORMATS: list[tuple[re.Pattern[bytes], str]] = [
    (re.compile(rb"GIF8[79]a"), "a GIF"),
    (re.compile(rb"RIFF....WEBP", re.DOTALL), "a WebP image"),
    (re.compile(rb"BM"), "a BMP image"),
    (re.compile(rb"II\*\x00|MM\x00\*"), "a TIFF image"),
    (re.compile(rb"....ftyp(heic|heix|heim|heis|hevc|hevx|mif1|msf1)", re.DOTALL), "a HEIC/HEIF photo"),
    (re.compile(rb"....ftypavi[fs]", re.DOTALL), "an AVIF image"),
    (re.compile(rb"\x00\x00\x00\x0cjP  \r\n\x87\n|\xff\x4f\xff\x51"), "a JPEG 2000 image"),
    (re.compile(rb"\xff\x0a|\x00\x00\x00\x0cJXL \r\n\x87\n"), "a JPEG XL image"),
    (re.compile(rb"8BPS"), "a Photoshop (PSD) file"),
    (re.compile(rb"\x00\x00\x01\x00"), "an icon (ICO) file"),
]


def _describe_refusal(data: bytes) -> ImageRejected:
    head = data[:64]
    for pattern, name in _OTHER_IMAGE_FORMATS:
        if pattern.match(head):
            return ImageRejected(
                "unsupported_format",
                f"This file is {name}; only JPEG and PNG images are supported. "
                "Save or export it as JPEG or PNG and upload that.",
            )
    text = _as_text(data[:2048])
    if text is not None:
        lowered = text.lstrip().lower()
        if lowered.startswith(("<!doctype html", "<html", "<head", "<body")):
            kind = "a web page (HTML)"
        elif "<svg" in lowered:
            return ImageRejected(
                "unsupported_format",
                "This file is an SVG drawing; only JPEG and PNG images are supported. "
                "Export it as PNG and upload that.",
            )
        elif "<html" in lowered:
            kind = "a web page (HTML)"
        elif lowered.startswith("data:image/"):
            kind = "a data: link written out as text"
        elif lowered.startswith("%pdf"):
            kind = "a PDF document"
        else:
            kind = "text"
        return ImageRejected(
            "not_an_image",
            f"This file is not a JPEG or PNG image (it looks like {kind}). Upload a JPEG or PNG.",
        )
    if data.startswith(b"%PDF"):
        kind = "a PDF document"
    elif data[4:8] == b"ftyp":
        kind = "a video"
    elif data.startswith((b"PK\x03\x04", b"\x1f\x8b", b"7z\xbc\xaf", b"Rar!")):
        kind = "a compressed archive"
    else:
        kind = None
    hint = f" (it looks like {kind})" if kind else ""
    return ImageRejected("not_an_image", f"This file is not a JPEG or PNG image{hint}. Upload a JPEG or PNG.")


def _as_text(head: bytes) -> str | None:
    for bom, encoding in ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if head.startswith(bom):
            head, codec = head[len(bom) :], encoding
            break
    else:
        codec = "utf-8"
    if codec == "utf-8" and b"\x00" in head:
        return None
    # The sample may end mid-character.
    text = head.decode(codec, errors="ignore")
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return text if text and printable >= 0.95 * len(text) else None


# --- decoding -----------------------------------------------------------------------------


def _decode_and_fit(
    data: bytes, fmt: str, target: tuple[int, int] | None
) -> tuple[bytes, tuple[int, int], tuple[int, int]]:
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # A global someone switched on would make Pillow pad cut-off uploads with grey and
        # we would accept them; better to fail loudly than to quietly change the rules.
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on; image intake refuses to run with it")

    # Pillow reports a too-large image first as a warning; here it is a refusal like any other.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=[name for name, f in _PILLOW_FORMATS.items() if f == fmt])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _too_many_pixels(None, fmt) from exc
        except Exception as exc:  # Pillow raises many types for malformed headers.
            raise _damaged(exc) from exc

        with img:
            if _PILLOW_FORMATS.get(img.format or "") != fmt:
                raise ImageRejected("corrupt", _DAMAGED_MESSAGE)
            # Image.open read only the header: check the size before decoding anything.
            stored_w, stored_h = img.size
            if stored_w < 1 or stored_h < 1:
                raise ImageRejected("corrupt", _DAMAGED_MESSAGE)
            kind = "progressive JPEG" if fmt == "JPEG" and img.info.get("progressive") else fmt
            if stored_w * stored_h > pixel_cap(kind) or max(stored_w, stored_h) > MAX_SIDE:
                raise _too_many_pixels((stored_w, stored_h), kind)
            # In coded data a 0xFF byte is followed by 0x00 or a restart marker, so this counts
            # scan headers (plus those of an embedded thumbnail).
            scans = data.count(b"\xff\xda") if kind == "progressive JPEG" else 0
            if scans > MAX_JPEG_SCANS:
                raise ImageRejected(
                    "too_many_scans",
                    f"This JPEG is split into {scans} scans (photos have about ten), "
                    "which would take far too long to decode. Save it again as an ordinary JPEG and upload that.",
                )

            # JPEG carries EXIF in its header; PNG may put it after the pixels, so it is read
            # after decoding.
            orientation = _orientation(img) if fmt == "JPEG" else 1
            try:
                if fmt == "JPEG":
                    _draft_for_target(img, orientation, target)
                img.load()
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                raise _too_many_pixels((stored_w, stored_h), kind) from exc
            except MemoryError:
                # Within the pixel caps this is the server running short, not a bad file.
                raise
            except Exception as exc:
                # Decoders report broken input as OSError, SyntaxError, ValueError, EOFError,
                # struct.error, zlib.error and more; for hostile bytes all of them mean
                # "this file is damaged", never a server error. Only the decode is guarded:
                # past this point the pixels are in memory and a failure would be our bug.
                raise _damaged(exc) from exc
            if fmt == "PNG":
                orientation = _orientation(img)

            # EXIF orientations 5-8 turn the picture a quarter, swapping its sides.
            source_size = (stored_h, stored_w) if orientation in (5, 6, 7, 8) else (stored_w, stored_h)
            if target is None:
                target = nearest_framing(*source_size)
            frame = _fit(img, orientation, target)
            frame = _to_rgb(frame, img.info.get("icc_profile"))

    return _encode_clean_png(frame), source_size, target


# Freed image memory stays in the C allocator's heap (glibc raises its mmap threshold after the
# first large free, so later large blocks come from the heap), where it counts against the web
# worker for good: a 40 MP PNG left a worker 262 MB larger. Handing it back costs about a
# microsecond when there is little to hand back (bench/bench_memory.py has the figures).
try:
    _malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to call
    _malloc_trim = None


def give_memory_back() -> None:
    """Return the C heap's free memory to the operating system, where the C library can."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def _orientation(img: Image.Image) -> int:
    # A malformed EXIF block should not cost the user their upload: treat it as upright
    # (and do not let Pillow's complaints about it fill the logs).
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            value = img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and value in range(1, 9) else 1


def _draft_for_target(img: Image.Image, orientation: int, target: tuple[int, int] | None) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the frame needs far fewer pixels.

    A 40 MP photo fitted to 1024x576 then decodes in a fraction of the time and memory. The
    draft is never smaller than the cover size, so the final resize still only shrinks.
    """
    w, h = img.size
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    tw, th = target if target is not None else nearest_framing(w, h)
    scale = max(tw / w, th / h)
    if scale >= 0.5:
        return
    need = (math.ceil(w * scale), math.ceil(h * scale))
    if orientation in (5, 6, 7, 8):
        need = (need[1], need[0])
    img.draft(img.mode, need)


def _resamplable(img: Image.Image) -> Image.Image:
    """Bring any PNG/JPEG mode to one that resizes correctly: 8-bit L, LA, RGB, RGBA or CMYK.

    Transparency stays an alpha channel for ``_onto_white``, which flattens it before the
    picture is scaled. L and CMYK are not yet made RGB so an embedded ICC profile, which
    describes those channels, can still be applied.
    """
    mode = img.mode
    transparency = img.info.get("transparency")
    if mode.startswith("I"):
        # 16-bit greyscale: Pillow's own conversion clips at 255 (almost all white), so scale.
        wide = img.convert("I")
        grey = wide.point(lambda v: v * (1 / 257) + 0.5).convert("L")
        if not isinstance(transparency, int):
            return grey
        import numpy as np  # only for this rare case: 16-bit grey with one transparent value

        alpha = Image.fromarray(np.where(np.asarray(wide) == transparency, 0, 255).astype(np.uint8))
        grey.putalpha(alpha)
        return grey
    if transparency is not None:
        # A palette entry or single colour marked transparent (PNG tRNS): make it alpha.
        return img.convert("LA" if mode in ("L", "1") else "RGBA")
    if mode in ("L", "LA", "RGB", "RGBA", "CMYK"):
        return img
    return img.convert({"1": "L", "La": "LA", "P": "RGB", "PA": "RGBA", "RGBa": "RGBA"}.get(mode, "RGB"))


def _onto_white(img: Image.Image) -> Image.Image:
    """Composite a frame that has alpha over white, the background a marketer expects."""
    if img.mode not in ("LA", "RGBA"):
        return img
    base = img.mode[:-1]
    flat = Image.new(base, img.size, (255,) * len(base))
    flat.paste(img.convert(base), mask=img.getchannel("A"))
    return flat


# Pillow's own resize(reducing_gap=3.0): first box-reduce by whole factors while the image is
# still more than three times the target, then one Lanczos pass. Faster, visually the same.
_REDUCING_GAP = 3.0
_LANCZOS_SUPPORT = 3.0
# Rows are converted and reduced this many pixels at a time, so no full-size copy is made.
_BAND_PIXELS = 1 << 18


def _fit(img: Image.Image, orientation: int, target: tuple[int, int]) -> Image.Image:
    """Turn upright, flatten onto white, scale to cover ``target`` and keep the centre, while
    holding no second full-size copy of the decoded picture.

    The decoded image is the only full-size thing in memory: horizontal bands of it are
    converted (``_resamplable``, ``_onto_white``) and box-reduced one at a time into a small
    image, which alone is then turned by the EXIF orientation and resampled with Lanczos.
    Flattening before resampling gives the same picture as Pillow's premultiplied-alpha
    resize followed by flattening (both are linear) without Pillow's full-size RGBa copy,
    and keeps the small image at three channels; the crop box keeps sub-pixel accuracy
    through the reduction.
    """
    transpose = ORIENTATION_TRANSPOSE.get(orientation)
    sw, sh = img.size
    turned = orientation in (5, 6, 7, 8)
    # The target and the cover box in the stored image's axes. The box is centred, and a
    # flip or quarter turn keeps a centred box centred: only its sides swap.
    tw, th = (target[1], target[0]) if turned else target
    scale = max(tw / sw, th / sh)
    bw, bh = min(sw, tw / scale), min(sh, th / scale)
    box = ((sw - bw) / 2, (sh - bh) / 2, (sw + bw) / 2, (sh + bh) / 2)
    fx, fy = max(1, int(bw / tw / _REDUCING_GAP)), max(1, int(bh / th / _REDUCING_GAP))
    # Whole pixels around the box, with room for the filter's reach (as Pillow's resize does).
    reach_x, reach_y = (_LANCZOS_SUPPORT - 0.5) * bw / tw, (_LANCZOS_SUPPORT - 0.5) * bh / th
    left, top = max(0, int(box[0] - reach_x)), max(0, int(box[1] - reach_y))
    right, bottom = min(sw, math.ceil(box[2] + reach_x)), min(sh, math.ceil(box[3] + reach_y))

    rows = fy * max(1, _BAND_PIXELS // ((right - left) * fy))
    small: Image.Image | None = None
    for y in range(top, bottom, rows):
        band = _onto_white(_resamplable(img.crop((left, y, right, min(y + rows, bottom)))))
        if (fx, fy) != (1, 1):
            band = band.reduce((fx, fy))
        if small is None:
            small = Image.new(band.mode, (math.ceil((right - left) / fx), math.ceil((bottom - top) / fy)))
        small.paste(band, (0, (y - top) // fy))
    assert small is not None  # the box is never empty
    rest = ((box[0] - left) / fx, (box[1] - top) / fy, (box[2] - left) / fx, (box[3] - top) / fy)
    if transpose is not None:
        rest = _turn_box(transpose, rest, small.size)
        small = small.transpose(transpose)
    return small.resize(target, Image.Resampling.LANCZOS, box=rest)


def _turn_box(
    transpose: Image.Transpose, box: tuple[float, float, float, float], size: tuple[int, int]
) -> tuple[float, float, float, float]:
    """Where ``box`` of an image of ``size`` lands once the image is transposed."""
    w, h = size
    moves = {
        Image.Transpose.FLIP_LEFT_RIGHT: lambda x, y: (w - x, y),
        Image.Transpose.FLIP_TOP_BOTTOM: lambda x, y: (x, h - y),
        Image.Transpose.ROTATE_180: lambda x, y: (w - x, h - y),
        Image.Transpose.ROTATE_90: lambda x, y: (y, w - x),
        Image.Transpose.ROTATE_270: lambda x, y: (h - y, x),
        Image.Transpose.TRANSPOSE: lambda x, y: (y, x),
        Image.Transpose.TRANSVERSE: lambda x, y: (h - y, w - x),
    }
    (x0, y0), (x1, y1) = moves[transpose](box[0], box[1]), moves[transpose](box[2], box[3])
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")) if ImageCms is not None else None


def _to_rgb(img: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """Convert to sRGB RGB, honouring an embedded ICC profile when there is one.

    The profile is about to be dropped with the rest of the metadata, so colours must be
    converted now (iPhone photos are Display P3; print JPEGs are CMYK with a press profile).
    A profile that is unusable or does not match the pixels is ignored rather than refused.
    """
    if icc_profile and ImageCms is not None:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
            converted = ImageCms.profileToProfile(
                img, source, _SRGB, renderingIntent=ImageCms.Intent.PERCEPTUAL, outputMode="RGB"
            )
            if converted is not None:
                return converted
        except Exception:  # a broken profile only costs colour accuracy
            pass
    return img if img.mode == "RGB" else img.convert("RGB")


def _encode_clean_png(img: Image.Image) -> bytes:
    # Copy only the pixels: whatever ``info`` the image carried (EXIF, XMP, ICC, text) stays
    # behind, so the PNG holds nothing but IHDR, IDAT and IEND.
    clean = Image.frombytes("RGB", img.size, img.tobytes())
    out = io.BytesIO()
    clean.save(out, format="PNG")
    return out.getvalue()


# --- refusals -----------------------------------------------------------------------------

_DAMAGED_MESSAGE = (
    "This image file is damaged and cannot be read. Open it in an image editor, save it again as JPEG or PNG, "
    "and upload the new file."
)


def _damaged(exc: BaseException) -> ImageRejected:
    text = str(exc).lower()
    if isinstance(exc, EOFError | struct.error) or "truncated" in text or "premature end" in text:
        return ImageRejected(
            "truncated",
            "This image file is incomplete: it ends before the picture does, often because an upload or download "
            "was cut off. Upload the complete file again.",
        )
    return ImageRejected("corrupt", _DAMAGED_MESSAGE)


def pixel_cap(kind: str) -> int:
    """How many pixels an image of this kind ("JPEG", "progressive JPEG", "PNG") may have."""
    return MAX_JPEG_PIXELS if kind == "JPEG" else MAX_PIXELS


def _too_many_pixels(size: tuple[int, int] | None, kind: str) -> ImageRejected:
    limit = f"{kind} images may have at most {pixel_cap(kind) / 1_000_000:g} megapixels and {MAX_SIDE} pixels per side"
    if size is None:
        return ImageRejected(
            "too_many_pixels",
            f"This image has far too many pixels to process; {limit}. Resize it and upload again.",
        )
    w, h = size
    return ImageRejected(
        "too_many_pixels",
        f"This image is {w}x{h} pixels ({w * h / 1_000_000:.1f} megapixels); {limit}. Resize it and upload again.",
    )
