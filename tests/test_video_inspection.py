"""Finalizing reads a video once (``media.inspect_video``): the same figures as
decoding every frame, the poster from the same pass, and damage still caught."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from jobs import media
from tests.fakes.stability_server import sample_mp4


def write(tmp_path: Path, data: bytes, name: str = "video.mp4") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def b_frame_mp4(path: Path, frames: int = 30) -> Path:
    """An H.264 MP4 whose decoder holds frames back (B-frames), as encoders often make."""
    import numpy as np

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.options = {"bf": "3", "g": "12"}
        for index in range(frames):
            image = np.full((240, 320, 3), index * 8 % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("size", [(1024, 576), (576, 1024), (768, 768)])
def test_inspection_gives_what_decoding_every_frame_gives(tmp_path, size):
    path = write(tmp_path, sample_mp4(*size, 25, 24))
    assert media.inspect_video(path) == media.probe_video(path)


def test_a_video_with_b_frames_is_counted_and_timed_as_decoding_it_counts_and_times_it(tmp_path):
    path = b_frame_mp4(tmp_path / "b.mp4")
    assert media.inspect_video(path) == media.probe_video(path)
    assert media.inspect_video(path).frames == 30


def test_the_poster_is_the_first_frame_as_a_jpeg(tmp_path):
    path = write(tmp_path, sample_mp4(1024, 576, 25, 24))
    media.inspect_video(path, tmp_path / "poster.jpg")
    media.write_poster(path, tmp_path / "expected.jpg")
    assert (tmp_path / "poster.jpg").read_bytes() == (tmp_path / "expected.jpg").read_bytes()


def test_a_video_cut_short_is_a_bad_video(tmp_path):
    data = sample_mp4(1024, 576, 25, 24)
    path = write(tmp_path, data[: len(data) * 2 // 3])
    with pytest.raises(media.BadVideo):
        media.inspect_video(path)


def test_a_file_that_is_no_video_is_a_bad_video(tmp_path):
    with pytest.raises(media.BadVideo):
        media.inspect_video(write(tmp_path, b"<html>not a video</html>"))
