"""Cine: P plays a series as a loop at the file's rate or a chosen one, and stops on a series change."""

from __future__ import annotations

import pytest

from dicom.series import open_paths
from tests.dicom_factory import write_multiframe, write_radiograph
from viewer.bindings import table
from viewer.cine import DEFAULT_FPS, file_frame_rate, next_rate


def frame_of(path):
    return open_paths([path]).all_series()[0].frames[0]


@pytest.mark.parametrize(("extra", "fps"), [
    ({}, 10.0),  # the factory's FrameTime of 100 ms
    ({"FrameTime": 40}, 25.0),
    ({"CineRate": 15, "FrameTime": 40}, 15.0),
    ({"RecommendedDisplayFrameRate": 30, "CineRate": 15}, 30.0),
    ({"FrameTime": 0}, None),
])
def test_the_files_rate(tmp_path, extra, fps):
    assert file_frame_rate(frame_of(write_multiframe(tmp_path / "mf.dcm", extra=extra))) == fps


def test_rates_step_through_the_menus_choices():
    assert next_rate(10.0, faster=True) == 15.0 and next_rate(12.5, faster=False) == 10.0
    assert next_rate(60.0, faster=True) == 60.0 and next_rate(2.0, faster=False) == 2.0


def test_p_plays_a_multiframe_image_as_a_loop_and_pauses(qtbot, window, tmp_path):
    window.open_paths([write_multiframe(tmp_path / "mf.dcm", n_frames=4, extra={"FrameTime": 50})])
    qtbot.keyClick(window.view, "P")
    assert window.cine.playing and window.cine.timer.interval() == 50  # 20 frames/s from FrameTime
    for expected in (1, 2, 3, 0, 1):
        window.cine.timer.timeout.emit()
        assert window.frame_index == expected
    qtbot.keyClick(window.view, "P")
    assert not window.cine.playing
    assert any(keys == "P" and "Cine" in action for keys, action in table())


def test_the_timer_advances_frames_on_its_own(qtbot, window, tmp_path):
    window.open_paths([write_multiframe(tmp_path / "mf.dcm", n_frames=6)])
    window.cine.set_fps(60.0)
    window.toggle_cine()
    qtbot.waitUntil(lambda: window.frame_index >= 2, timeout=3000)
    window.toggle_cine()


def test_brackets_change_the_rate_while_playing(qtbot, window, tmp_path):
    window.open_paths([write_multiframe(tmp_path / "mf.dcm", n_frames=4, extra={"FrameTime": None})])
    window.toggle_cine()
    assert window.cine.rate == DEFAULT_FPS and window.cine.timer.interval() == 100
    qtbot.keyClick(window.view, "]")
    assert window.cine.rate == 15.0 and window.cine.timer.interval() == 67
    qtbot.keyClick(window.view, "[")
    qtbot.keyClick(window.view, "[")
    assert window.cine.rate == 5.0 and window.cine.playing


def test_cine_stops_on_a_series_change_and_a_single_image_does_not_play(qtbot, window, tmp_path):
    write_multiframe(tmp_path / "mf.dcm", n_frames=4, study_uid="1.2.3")
    write_radiograph(tmp_path / "dx.dcm", study_uid="1.2.3")
    window.open_paths([tmp_path])
    single = next(i for i, s in enumerate(window.series) if len(s.frames) == 1)
    window.show_series(1 - single)
    window.toggle_cine()
    assert window.cine.playing
    window.show_series(single)
    assert not window.cine.playing
    window.toggle_cine()
    assert not window.cine.playing and "one image" in window.statusBar().currentMessage()
