"""Image intake: what an upload must be, and what the pipeline gets out of it.

Every image here is made on the spot with Pillow/numpy (or, for headers Pillow will not write,
assembled chunk by chunk), so the tests show exactly what each input is.
"""

from __future__ import annotations

import functools
import hashlib
import io
import random
import struct
import zlib

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageCms, ImageFile, ImageOps

from jobs.intake import (
    FRAMINGS,
    MAX_JPEG_PIXELS,
    MAX_PIXELS,
    ImageRejected,
    NormalizedImage,
    nearest_framing,
    normalize_image,
    parse_framing,
    sniff_format,
)

MB = 1024 * 1024
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


# --- factories ------------------------------------------------------------------------------


def picture(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """A smooth gradient: realistic enough to compress like a photo, cheap to make."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    rgb = np.stack([np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)), (x + y) / 2], axis=-1)
    img = Image.fromarray(rgb.astype(np.uint8))
    return img if mode == "RGB" else img.convert(mode)


def halves(width: int, height: int, first=RED, second=BLUE) -> Image.Image:
    """Left half ``first``, right half ``second``: shows where rotation and cropping put things."""
    img = Image.new("RGB", (width, height), second)
    img.paste(first, (0, 0, width // 2, height))
    return img


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def jpeg(width: int, height: int, **params) -> bytes:
    return encode(picture(width, height), "JPEG", quality=90, **params)


def png(width: int, height: int, **params) -> bytes:
    return encode(picture(width, height), "PNG", **params)


def exif_with(orientation: int | None = None, description: str | None = None) -> bytes:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    if description is not None:
        exif[0x010E] = description
    return exif.tobytes()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def handmade_png(width: int, height: int, *, bit_depth: int, color_type: int, row: bytes | None = None) -> bytes:
    """A well-formed PNG whose every row is ``row`` (zeros by default), compressed as it goes.

    Used for what Pillow will not write itself (16-bit RGB) and for huge dimensions: a
    30000x30000 1-bit image is 112 MB of scanlines but only ~100 KB once deflated, and is
    built here without ever holding the scanlines in memory.
    """
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    row_bytes = (width * channels * bit_depth + 7) // 8
    scanline = b"\x00" + (row if row is not None else bytes(row_bytes))
    assert len(scanline) == row_bytes + 1
    deflate = zlib.compressobj(9)
    rows_per_block = max(1, (1 << 22) // len(scanline))
    block = scanline * rows_per_block
    idat = bytearray()
    remaining = height
    while remaining:
        n = min(rows_per_block, remaining)
        idat += deflate.compress(block if n == rows_per_block else scanline * n)
        remaining -= n
    idat += deflate.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", bytes(idat)) + png_chunk(b"IEND", b"")


@functools.cache
def bomb_png() -> bytes:
    """A well-formed 30000x30000 1-bit PNG: ~100 KB on disk, 900 megapixels decoded."""
    return handmade_png(30000, 30000, bit_depth=1, color_type=0)


def chunk_types(png_bytes: bytes) -> list[bytes]:
    assert png_bytes.startswith(b"\x89PNG\r\n\x1a\n")
    types, pos = [], 8
    while pos < len(png_bytes):
        (length,) = struct.unpack(">I", png_bytes[pos : pos + 4])
        types.append(png_bytes[pos + 4 : pos + 8])
        pos += 12 + length
    return types


def decoded(result: NormalizedImage) -> Image.Image:
    img = Image.open(io.BytesIO(result.png_bytes))
    img.load()
    return img


def rejected(source, **kwargs) -> ImageRejected:
    with pytest.raises(ImageRejected) as info:
        normalize_image(source, **kwargs)
    return info.value


class CountingStream(io.RawIOBase):
    """A read-only stream of ``total`` bytes (``head`` then zeros) that counts what is read.

    Produces bytes on demand, so a "50 MB upload" costs only what the reader takes.
    """

    def __init__(self, total: int, head: bytes = b"", seekable: bool = False) -> None:
        self.total, self.head, self._seekable = total, head, seekable
        self.pos = 0
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._seekable

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if not self._seekable:
            raise io.UnsupportedOperation("seek")
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.total}[whence]
        self.pos = base + offset
        return self.pos

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self.total - self.pos
        size = min(size, self.total - self.pos)
        start, self.pos = self.pos, self.pos + size
        data = self.head[start : start + size]
        data += bytes(size - len(data))
        self.bytes_read += size
        return data


# --- accepted images land on one of the three sizes -----------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "framing"),
    [
        (1920, 1080, "landscape"),
        (1600, 1000, "landscape"),
        (3000, 100, "landscape"),
        (1080, 1920, "portrait"),
        (900, 1600, "portrait"),
        (1000, 1000, "square"),
        (1200, 1000, "square"),
        (1000, 1150, "square"),
    ],
)
@pytest.mark.parametrize("make", [jpeg, png], ids=["jpeg", "png"])
def test_jpeg_and_png_of_any_shape_land_on_the_nearest_supported_size(make, width, height, framing):
    result = normalize_image(make(width, height))

    assert (result.width, result.height) == FRAMINGS[framing]
    assert result.framing == framing
    assert (result.source_width, result.source_height) == (width, height)
    out = decoded(result)
    assert out.format == "PNG"
    assert out.mode == "RGB"
    assert out.size == FRAMINGS[framing]


def test_four_by_three_photos_go_wide_or_tall_rather_than_square():
    # 4:3 is exactly halfway (in log aspect) between 1:1 and 16:9; the tie is settled on purpose.
    assert nearest_framing(4000, 3000) == FRAMINGS["landscape"]
    assert nearest_framing(3000, 4000) == FRAMINGS["portrait"]
    assert nearest_framing(4032, 3024) == FRAMINGS["landscape"]


def test_format_sha256_and_size_describe_the_original_upload():
    data = jpeg(640, 360)

    result = normalize_image(data)

    assert result.format == "JPEG"
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.size_bytes == len(data)
    assert normalize_image(png(64, 64)).format == "PNG"


def test_explicit_framing_overrides_the_pictures_own_shape():
    data = jpeg(1920, 1080)

    square = normalize_image(data, framing="square")
    assert (square.width, square.height) == (768, 768)
    assert square.framing == "square"
    portrait = normalize_image(data, framing="576x1024")
    assert (portrait.width, portrait.height) == (576, 1024)
    assert decoded(portrait).size == (576, 1024)
    assert (portrait.source_width, portrait.source_height) == (1920, 1080)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("landscape", (1024, 576)),
        (" Portrait ", (576, 1024)),
        ("SQUARE", (768, 768)),
        ("1024x576", (1024, 576)),
        ("576X1024", (576, 1024)),
        ("768\N{MULTIPLICATION SIGN}768", (768, 768)),
    ],
)
def test_framings_are_accepted_by_name_or_by_size(text, size):
    assert parse_framing(text) == size


@pytest.mark.parametrize("text", ["wide", "1920x1080", "1024x577", "", "landscape-ish"])
def test_unknown_framing_is_refused_before_the_upload_is_read(text):
    stream = CountingStream(1000, head=png(8, 8))

    error = rejected(stream, framing=text)

    assert error.code == "bad_framing"
    assert "landscape (1024x576)" in error.message
    assert "portrait (576x1024)" in error.message
    assert "square (768x768)" in error.message
    assert stream.bytes_read == 0


def test_cover_fit_crops_the_sides_of_a_wide_picture_and_keeps_its_centre():
    # Red left, blue right, green middle strip: a square crop of a 3:1 picture keeps only green.
    img = halves(900, 300)
    img.paste((0, 255, 0), (300, 0, 600, 300))

    out = np.asarray(decoded(normalize_image(encode(img, "PNG"), framing="square")))

    assert out.shape == (768, 768, 3)
    # Lanczos looks a few source pixels past the crop, so allow a thin blended border.
    assert (out[:, 20:-20] == (0, 255, 0)).all()
    assert out[:, :20, 0].max() > 0  # that border is where the red started


def test_tiny_images_are_scaled_up_to_the_frame():
    result = normalize_image(encode(Image.new("RGB", (3, 3), RED), "PNG"))

    assert (result.width, result.height) == (768, 768)
    assert np.asarray(decoded(result)).reshape(-1, 3).min(axis=0).tolist() == [255, 0, 0]


# --- content decides, not the name ----------------------------------------------------------


def test_png_named_jpg_is_accepted():
    upload = SimpleUploadedFile("holiday.jpg", png(800, 450), content_type="image/jpeg")

    result = normalize_image(upload)

    assert result.format == "PNG"
    assert (result.width, result.height) == (1024, 576)


def test_jpeg_named_png_is_accepted():
    upload = SimpleUploadedFile("holiday.png", jpeg(450, 800), content_type="image/png")

    assert normalize_image(upload).format == "JPEG"


def test_html_renamed_png_is_refused_with_a_clear_message():
    page = b"<!DOCTYPE html>\n<html><head><title>Login</title></head><body>Hello</body></html>\n"
    upload = SimpleUploadedFile("photo.png", page, content_type="image/png")

    error = rejected(upload)

    assert error.code == "not_an_image"
    assert "JPEG or PNG" in error.message
    assert "HTML" in error.message


def test_svg_is_refused_and_named_as_svg():
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>'

    error = rejected(SimpleUploadedFile("logo.png", svg))

    assert error.code == "unsupported_format"
    assert "SVG" in error.message
    assert "PNG" in error.message


def test_plain_text_is_refused_as_not_an_image():
    error = rejected(b"just some notes about the campaign\n")

    assert error.code == "not_an_image"
    assert "JPEG or PNG" in error.message
    assert "text" in error.message


def test_random_binary_is_refused_as_not_an_image():
    error = rejected(bytes(random.Random(1).randrange(256) for _ in range(4096)))

    assert error.code == "not_an_image"
    assert "JPEG or PNG" in error.message


@pytest.mark.parametrize(
    ("fmt", "name"),
    [("GIF", "GIF"), ("WEBP", "WebP"), ("BMP", "BMP"), ("TIFF", "TIFF")],
)
def test_other_image_formats_are_refused_as_unsupported(fmt, name):
    data = encode(picture(64, 48), fmt)

    error = rejected(SimpleUploadedFile("picture.jpg", data))

    assert error.code == "unsupported_format"
    assert name in error.message
    assert "JPEG or PNG" in error.message


def test_heic_is_refused_as_unsupported_with_its_name():
    # The box header of an iPhone photo; Pillow cannot read HEIC here, the sniffer still can.
    heic = struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00mif1heic" + bytes(200)

    error = rejected(heic)

    assert error.code == "unsupported_format"
    assert "HEIC" in error.message


def test_sniff_format_goes_by_magic_bytes():
    assert sniff_format(jpeg(8, 8)[:16]) == "JPEG"
    assert sniff_format(png(8, 8)[:16]) == "PNG"
    assert sniff_format(b"GIF89a") is None
    assert sniff_format(b"") is None


def test_multi_picture_jpeg_is_accepted_as_jpeg():
    # Some cameras (and iPhone portrait shots) write MPO: a JPEG with extra pictures appended.
    buf = io.BytesIO()
    picture(640, 360).save(buf, "MPO", save_all=True, append_images=[picture(320, 180)])

    result = normalize_image(buf.getvalue())

    assert result.format == "JPEG"
    assert (result.source_width, result.source_height) == (640, 360)


# --- size limits ----------------------------------------------------------------------------


def test_zero_bytes_are_refused_as_empty():
    assert rejected(b"").code == "empty"
    error = rejected(SimpleUploadedFile("empty.png", b""))
    assert error.code == "empty"
    assert "empty" in error.message


def test_fifty_megabyte_stream_is_refused_after_reading_at_most_the_cap_plus_one():
    stream = CountingStream(50 * MB, head=jpeg(64, 64))

    error = rejected(stream, max_bytes=10 * MB)

    assert error.code == "too_large"
    assert "10 MB" in error.message
    assert stream.bytes_read <= 10 * MB + 1


def test_too_large_message_gives_the_size_when_the_stream_can_tell():
    stream = CountingStream(50 * MB, head=jpeg(64, 64), seekable=True)

    error = rejected(stream, max_bytes=10 * MB)

    assert error.message == "The file is 50.0 MB; images must be 10 MB or smaller."
    assert stream.bytes_read <= 10 * MB + 1


def test_upload_whose_declared_size_is_over_the_cap_is_refused_without_reading():
    upload = SimpleUploadedFile("big.jpg", jpeg(64, 64))
    upload.size = 50 * MB  # what Django's request parsing recorded

    error = rejected(upload, max_bytes=10 * MB)

    assert error.code == "too_large"
    assert upload.tell() == 0


def test_the_cap_is_inclusive():
    data = png(64, 36)

    assert normalize_image(data, max_bytes=len(data)).size_bytes == len(data)
    assert normalize_image(io.BytesIO(data), max_bytes=len(data)).size_bytes == len(data)
    assert rejected(data, max_bytes=len(data) - 1).code == "too_large"
    assert rejected(io.BytesIO(data), max_bytes=len(data) - 1).code == "too_large"


def test_the_cap_defaults_to_the_max_upload_bytes_setting(settings):
    data = png(64, 36)
    settings.MAX_UPLOAD_BYTES = len(data) - 1

    error = rejected(data)

    assert error.code == "too_large"


def test_default_cap_is_ten_megabytes(settings):
    del settings.MAX_UPLOAD_BYTES
    stream = CountingStream(11 * MB, head=jpeg(64, 64))

    error = rejected(stream)

    assert error.code == "too_large"
    assert "10 MB" in error.message
    assert stream.bytes_read == 10 * MB + 1


# --- decompression bombs --------------------------------------------------------------------


@pytest.fixture
def load_calls(monkeypatch):
    """Records every decode (ImageFile.load) while still letting it happen."""
    calls = []
    original = ImageFile.ImageFile.load

    def spy(self):
        calls.append(self.size)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return calls


def test_thirty_thousand_pixel_square_png_is_refused_without_being_decoded(load_calls):
    bomb = bomb_png()
    assert len(bomb) < 1 * MB  # small on disk, 900 megapixels decoded
    with pytest.raises(Image.DecompressionBombError, match="900000000 pixels"):
        Image.open(io.BytesIO(bomb))  # Pillow itself reads it as a well-formed 900 MP PNG

    error = rejected(bomb)

    assert error.code == "too_many_pixels"
    assert "megapixels" in error.message
    assert load_calls == []


def test_bomb_is_refused_by_our_own_check_even_if_pillows_guard_is_switched_off(monkeypatch, load_calls):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)

    error = rejected(bomb_png())

    assert error.code == "too_many_pixels"
    assert "30000x30000" in error.message
    assert load_calls == []


def test_image_over_the_pixel_cap_but_under_pillows_limit_is_refused_before_decoding(load_calls):
    side = int(MAX_PIXELS**0.5) + 10  # ~40 MP: below Pillow's 89 MP warning, above ours
    error = rejected(handmade_png(side, side, bit_depth=1, color_type=0))

    assert error.code == "too_many_pixels"
    assert load_calls == []


def test_a_48_megapixel_phone_jpeg_is_accepted_and_decoded_at_a_fraction_of_its_size(monkeypatch):
    decoded = []
    original = ImageFile.ImageFile.load

    def spy(self):
        result = original(self)
        decoded.append(self.size)
        return result

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    photo = encode(halves(8000, 6000), "JPEG", quality=60)
    assert 8000 * 6000 > MAX_PIXELS  # over the PNG cap

    result = normalize_image(photo)

    assert (result.width, result.height) == (1024, 576) and result.source_width == 8000
    assert decoded and all(w * h <= 8000 * 6000 / 16 for w, h in decoded)  # 1/4 scale or less


def test_a_png_of_the_same_size_is_refused_naming_the_png_cap(load_calls):
    error = rejected(handmade_png(8000, 6000, bit_depth=1, color_type=0))

    assert error.code == "too_many_pixels"
    assert "PNG images may have at most 40 megapixels" in error.message
    assert load_calls == []


def test_a_jpeg_over_its_own_cap_is_refused_before_decoding(load_calls):
    side = int(MAX_JPEG_PIXELS**0.5) + 10
    header_only = encode(Image.new("L", (side, side)), "JPEG", quality=10)

    error = rejected(header_only)

    assert error.code == "too_many_pixels"
    assert f"This image is {side}x{side} pixels" in error.message
    assert "JPEG images may have at most 89 megapixels" in error.message
    assert load_calls == []


def test_an_ordinary_progressive_jpeg_is_accepted():
    result = normalize_image(encode(halves(1600, 900), "JPEG", quality=85, progressive=True))

    assert (result.width, result.height) == (1024, 576)


def test_a_progressive_jpeg_gets_the_pixel_cap_of_an_image_decoded_whole(load_calls):
    # Progressive decoding keeps the full image's coefficients, whatever the output scale.
    error = rejected(encode(Image.new("L", (8000, 6000)), "JPEG", quality=10, progressive=True))

    assert error.code == "too_many_pixels"
    assert "progressive JPEG images may have at most 40 megapixels" in error.message
    assert load_calls == []


def test_a_jpeg_of_thousands_of_scans_is_refused_before_decoding(load_calls):
    data = encode(picture(64, 64), "JPEG", progressive=True)
    last_scan = data[data.rindex(b"\xff\xda") : -2]
    scan_bomb = data[:-2] + last_scan * 2000 + b"\xff\xd9"
    assert len(scan_bomb) < 1 * MB

    error = rejected(scan_bomb)

    assert error.code == "too_many_scans"
    assert "split into 2010 scans" in error.message
    assert load_calls == []


def test_very_long_sliver_is_refused_even_with_few_pixels(load_calls):
    error = rejected(handmade_png(20000, 2, bit_depth=8, color_type=0))

    assert error.code == "too_many_pixels"
    assert load_calls == []


def test_pillow_bomb_warning_counts_as_a_refusal(monkeypatch):
    # Should someone lower Pillow's limit below ours, its warning must refuse, not just log.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)

    assert rejected(png(40, 30)).code == "too_many_pixels"


# --- damaged files --------------------------------------------------------------------------


@pytest.mark.parametrize("make", [jpeg, png], ids=["jpeg", "png"])
def test_file_cut_in_half_is_refused_as_truncated(make):
    data = make(400, 300)

    error = rejected(data[: len(data) // 2])

    assert error.code == "truncated"
    assert "incomplete" in error.message


def test_truncated_images_are_not_padded_even_though_pillow_could(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = jpeg(400, 300)

    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        normalize_image(data[: len(data) // 2])


def test_png_with_a_bad_checksum_is_refused_as_damaged():
    data = bytearray(png(64, 64))
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0xFF

    error = rejected(bytes(data))

    assert error.code in {"corrupt", "truncated"}


@pytest.mark.parametrize("make", [jpeg, png], ids=["jpeg", "png"])
def test_every_cut_and_corruption_is_an_image_rejected_never_another_exception(make):
    data = make(96, 64, **({"exif": exif_with(6, "x" * 40)} if make is jpeg else {}))
    rng = random.Random(1234)
    candidates = [data[:n] for n in range(1, len(data), max(1, len(data) // 30))]
    for _ in range(40):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        candidates.append(bytes(mutated))

    for candidate in candidates:
        try:
            result = normalize_image(candidate)
        except ImageRejected as error:
            assert error.code in {"truncated", "corrupt", "not_an_image", "unsupported_format", "too_many_pixels"}
            assert error.message
        else:
            assert decoded(result).size in FRAMINGS.values()


# --- orientation, colour and metadata -------------------------------------------------------


def test_exif_orientation_6_is_applied_so_a_sideways_jpeg_comes_out_portrait():
    # Stored 400x200 with red on the left; orientation 6 means "turn 90 degrees clockwise".
    data = encode(halves(400, 200), "JPEG", quality=95, exif=exif_with(6))

    result = normalize_image(data)

    assert (result.source_width, result.source_height) == (200, 400)
    assert (result.width, result.height) == FRAMINGS["portrait"]
    out = np.asarray(decoded(result)).astype(int)
    assert np.abs(out[100, 288] - RED).max() < 40  # top is red
    assert np.abs(out[900, 288] - BLUE).max() < 40  # bottom is blue


def test_large_rotated_jpeg_is_decoded_reduced_and_still_turned_the_right_way():
    # 4000x2000 is more than twice the frame, so libjpeg decodes it at reduced scale.
    data = encode(halves(4000, 2000), "JPEG", quality=90, exif=exif_with(6))

    result = normalize_image(data)

    assert (result.source_width, result.source_height) == (2000, 4000)
    out = np.asarray(decoded(result)).astype(int)
    assert out.shape == (1024, 576, 3)
    assert np.abs(out[100, 288] - RED).max() < 40
    assert np.abs(out[900, 288] - BLUE).max() < 40


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_every_exif_orientation_matches_pillows_exif_transpose(fmt, orientation):
    img = picture(96, 60)
    img.paste(RED, (0, 0, 20, 20))  # a marker that makes every turn and flip distinguishable
    data = encode(img, fmt, exif=exif_with(orientation))
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))

    ours = normalize_image(data, framing="square")
    reference = normalize_image(encode(upright.convert("RGB"), "PNG"), framing="square")

    assert (ours.source_width, ours.source_height) == upright.size
    assert np.array_equal(np.asarray(decoded(ours)), np.asarray(decoded(reference)))


def test_output_carries_no_metadata_at_all():
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encode(
        picture(640, 360),
        "JPEG",
        exif=exif_with(1, "shot at the secret launch venue"),
        icc_profile=srgb,
        comment=b"internal",
    )

    result = normalize_image(data)

    assert set(chunk_types(result.png_bytes)) == {b"IHDR", b"IDAT", b"IEND"}
    assert b"secret" not in result.png_bytes
    out = decoded(result)
    assert not out.getexif()
    assert "icc_profile" not in out.info


def test_png_text_and_exif_chunks_are_dropped():
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Author", "someone")
    data = encode(picture(300, 300), "PNG", pnginfo=info, exif=exif_with(1, "private"))

    result = normalize_image(data)

    assert set(chunk_types(result.png_bytes)) == {b"IHDR", b"IDAT", b"IEND"}
    assert b"someone" not in result.png_bytes


def test_rgba_png_is_composited_on_white():
    img = Image.new("RGBA", (400, 400), (0, 0, 0, 0))
    img.paste((255, 0, 0, 255), (0, 0, 400, 200))  # top half opaque red, bottom transparent

    out = np.asarray(decoded(normalize_image(encode(img, "PNG")))).astype(int)

    assert out.shape == (768, 768, 3)
    assert np.abs(out[100, 384] - RED).max() < 3
    assert np.abs(out[700, 384] - WHITE).max() < 3


def test_soft_transparent_edges_blend_into_white_without_a_dark_fringe():
    # Transparent pixels stored as (0, 0, 0, 0) must not bleed black into the red when resized.
    img = Image.new("RGBA", (37, 37), (0, 0, 0, 0))
    img.paste((255, 0, 0, 255), (0, 0, 37, 18))

    out = np.asarray(decoded(normalize_image(encode(img, "PNG")))).astype(int)

    assert out[..., 0].min() >= 250  # every pixel is red, white or a blend of the two


def test_sixteen_bit_grey_png_with_a_transparent_value_turns_white_there():
    grey = np.full((200, 300), 20000, dtype=np.uint16)
    grey[100:] = 0
    data = encode(Image.fromarray(grey), "PNG", transparency=0)

    out = np.asarray(decoded(normalize_image(data))).astype(int)

    assert out[100, 512].tolist() == [78, 78, 78]  # 20000 / 257
    assert out[500, 512].tolist() == [255, 255, 255]


def test_palette_png_with_a_transparent_colour_converts_fine():
    img = Image.new("P", (200, 200), 0)
    img.putpalette([0, 0, 0, 0, 0, 255] + [0] * (254 * 3))
    img.paste(1, (0, 0, 200, 100))  # top half palette entry 1 (blue), bottom entry 0
    data = encode(img, "PNG", transparency=0)

    out = np.asarray(decoded(normalize_image(data))).astype(int)

    assert np.abs(out[100, 384] - BLUE).max() < 3
    assert np.abs(out[700, 384] - WHITE).max() < 3


def test_palette_png_without_transparency_converts_fine():
    data = encode(picture(300, 200).convert("P", palette=Image.Palette.ADAPTIVE), "PNG")

    assert decoded(normalize_image(data)).mode == "RGB"


def test_grey_and_grey_alpha_and_one_bit_pngs_convert_fine():
    for mode in ("L", "LA", "1"):
        result = normalize_image(encode(picture(320, 180, mode), "PNG"))
        assert decoded(result).mode == "RGB"
        assert (result.width, result.height) == (1024, 576)


def test_sixteen_bit_grey_png_keeps_its_tones_instead_of_turning_white():
    mid_grey = np.full((200, 300), 32768, dtype=np.uint16)
    data = encode(Image.fromarray(mid_grey), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"

    out = np.asarray(decoded(normalize_image(data)))

    assert out.mean() == pytest.approx(128, abs=2)


def test_sixteen_bit_rgb_png_converts_fine():
    # Pillow cannot write 16-bit RGB, so the rows are written by hand: big-endian orange.
    row = struct.pack(">HHH", 65535, 32896, 0) * 160
    data = handmade_png(160, 90, bit_depth=16, color_type=2, row=row)

    out = np.asarray(decoded(normalize_image(data))).astype(int)

    assert np.abs(out[288, 512] - (255, 128, 0)).max() <= 2


def test_cmyk_jpeg_is_converted_to_rgb():
    data = encode(Image.new("CMYK", (320, 180), (0, 255, 255, 0)), "JPEG", quality=95)  # red in CMYK

    out = np.asarray(decoded(normalize_image(data))).astype(int)

    assert out.shape == (576, 1024, 3)
    assert out[288, 512, 0] > 200
    assert out[288, 512, 1:].max() < 60


def test_embedded_icc_profile_is_applied_before_it_is_dropped():
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encode(Image.new("RGB", (320, 180), (200, 120, 40)), "PNG", icc_profile=srgb)

    out = np.asarray(decoded(normalize_image(data))).astype(int)

    assert np.abs(out[288, 512] - (200, 120, 40)).max() <= 3


def test_unusable_icc_profile_is_ignored_rather_than_refused():
    data = encode(Image.new("RGB", (320, 180), (200, 120, 40)), "JPEG", quality=95, icc_profile=b"not a profile")

    out = np.asarray(decoded(normalize_image(data))).astype(int)

    assert np.abs(out[288, 512] - (200, 120, 40)).max() <= 6


def test_refusals_read_as_sentences_for_people():
    cases = [
        rejected(b""),
        rejected(b"<html></html>"),
        rejected(encode(picture(8, 8), "GIF")),
        rejected(CountingStream(11 * MB), max_bytes=10 * MB),
        rejected(png(8, 8), framing="huge"),
    ]
    for error in cases:
        assert error.message[0].isupper()
        assert error.message.endswith(".")
        assert str(error) == error.message
        assert error.code.isidentifier()
