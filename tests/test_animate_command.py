"""``manage.py animate``: the pipeline from a terminal."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from jobs import media
from jobs.models import Job
from tests.factories import photo_bytes

# The command runs the pipeline in a thread with its own connection, so the
# rows it works on must be committed.
pytestmark = pytest.mark.django_db(transaction=True)


def test_animate_writes_a_video_and_reports_its_frames_size_and_duration(tmp_path):
    image = tmp_path / "photo.png"
    image.write_bytes(photo_bytes(800, 800, fmt="PNG"))
    out = tmp_path / "out" / "video.mp4"
    stdout, stderr = io.StringIO(), io.StringIO()

    call_command(
        "animate", str(image), "--out", str(out), "--seed", "9", "--motion", "200", stdout=stdout, stderr=stderr
    )

    info = media.probe_video(out)
    assert (info.codec, info.width, info.height) == ("h264", 768, 768)
    assert info.frames >= 14
    printed = stdout.getvalue()
    assert str(out) in printed and f"{info.frames} frames" in printed and "768x768" in printed and "seed 9" in printed
    assert "100%" in stderr.getvalue()  # the progress bar reached the end
    job = Job.objects.get()
    assert job.status == Job.COMPLETED and job.motion_bucket_id == 200


def test_animate_refuses_a_file_that_is_not_an_image(tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("<html>not an image</html>")
    with pytest.raises(CommandError, match="JPEG or PNG"):
        call_command("animate", str(fake), "--out", str(tmp_path / "v.mp4"), stderr=io.StringIO())
    assert Job.objects.count() == 0


def test_animate_refuses_out_of_range_parameters(tmp_path):
    image = tmp_path / "photo.jpg"
    image.write_bytes(photo_bytes())
    with pytest.raises(CommandError, match="cfg scale must be from 0 to 10"):
        call_command("animate", str(image), "--cfg-scale", "11", stderr=io.StringIO())


def test_animate_with_a_missing_file_says_so(tmp_path):
    with pytest.raises(CommandError, match="No such image file"):
        call_command("animate", str(tmp_path / "nope.jpg"))
