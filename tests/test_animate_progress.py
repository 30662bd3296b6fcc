"""``manage.py animate`` in a real terminal process: the progress bar stays one
line, not broken up by the pipeline's log lines."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.factories import photo_bytes
from tests.processes import ROOT, database_url, shared_files_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_progress_bar_is_not_broken_up_by_log_lines(tmp_path, settings):
    image = tmp_path / "photo.jpg"
    image.write_bytes(photo_bytes(800, 600))
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "I2V_VAR_DIR": str(tmp_path / "var"),
        "I2V_ENV_FILE": str(tmp_path / "none.env"),
        **shared_files_env(settings),
        "WORK_DIR": str(tmp_path / "work"),
        "LOG_LEVEL": "INFO",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "animate", str(image), "--out", str(tmp_path / "video.mp4")],
        cwd=ROOT,
        env=env,
        capture_output=True,  # bytes: text mode would turn every "\r" into a new line
        timeout=180,
    )
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    lines = stderr.split("\n")  # a bar redraws its line with "\r", not a new line
    bars = [line for line in lines if line.startswith("\r[")]
    assert len(bars) == 1, stderr  # one line, drawn over in place
    assert "100%" in bars[0].split("\r")[-1] and "completed" in bars[0].split("\r")[-1]
    assert " INFO " not in stderr, stderr
    assert "Video:" in result.stdout.decode()
