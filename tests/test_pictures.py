"""The pictures: titled panels, overlays, arrows through a camera, MP4 beside GIF, and stage II's
plot with the kept iterate marked."""

import json
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from cgwm_env.learn.plots import kept_record, learning_figure, plot_learning
from cgwm_env.render.annotate import TITLE_HEIGHT, arrows, overlay, panel_video, panels, write_video
from cgwm_env.render.camera import Camera, look_at

LOG = Path(__file__).resolve().parents[1] / "cgwm_env" / "assets" / "world_models" / "cube" / "learn_log.jsonl"


def test_panels_are_titled_and_videos_keep_their_frames(tmp_path):
    red, blue = np.zeros((48, 64, 3), np.uint8), np.zeros((48, 32, 3), np.uint8)
    red[..., 0], blue[..., 2] = 200, 200
    image = panels([red, blue], ["observed", "ours"])
    assert image.shape == (48 + TITLE_HEIGHT, 96, 3)
    np.testing.assert_array_equal(image[TITLE_HEIGHT:, :64], red)  # the panels themselves untouched
    assert (image[:TITLE_HEIGHT, :64] > 150).any() and (image[:TITLE_HEIGHT, 64:] > 150).any()  # titles written
    video = panel_video({"observed": np.stack([red] * 3), "ours": np.stack([blue] * 3)})
    assert video.shape == (3, 48 + TITLE_HEIGHT, 96, 3)
    with pytest.raises(ValueError, match="titles"):
        panels([red], ["a", "b"])
    with pytest.raises(ValueError, match="videos"):
        panel_video({"a": np.stack([red] * 3), "b": np.stack([blue] * 2)})
    big = np.full((200, 200, 3), 200, np.uint8)
    texted = overlay(big, ["step 3", "angle 10.0 deg"])
    assert (texted[:20, :40] != big[:20, :40]).any() and (texted[-100:, -50:] == big[-100:, -50:]).all()
    frames = np.stack([np.full((35, 50, 3), 10 * k, np.uint8) for k in range(6)])  # odd height: padded for H.264
    mp4, gif = write_video(frames, tmp_path / "clip", fps=15)
    assert imageio.mimread(gif)[3].shape[:2] == (35, 50)
    with imageio.get_reader(mp4) as reader:
        assert reader.get_meta_data()["codec"] == "h264" and reader.count_frames() == 6
        assert abs(int(reader.get_data(3).mean()) - 30) <= 3


def test_arrows_go_where_the_camera_sees_them():
    camera = Camera.from_fovy(np.radians(60.0), 64, 64, look_at((0.0, 0.0, 1.0), (0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0)))
    image = np.zeros((64, 64, 3), np.uint8)
    drawn = arrows(image, camera, [[0.0, 0.0, 0.0]], [[0.2, 0.0, 0.0]], [(0, 255, 0)])
    uv, _ = camera.project(torch.tensor([[0.1, 0.0, 0.0]]))  # the arrow's middle
    u, v = np.round(uv[0].numpy()).astype(int)
    assert drawn[v - 1:v + 2, u - 1:u + 2, 1].max() == 255 and drawn[..., 0].max() == 0
    assert (arrows(image, camera, [[0, 0, 2.0]], [[0.1, 0, 2.0]], [(0, 255, 0)]) == 0).all()  # behind the camera


def test_learning_plot_shows_loss_psnr_and_each_parameter_with_the_kept_iterate(tmp_path):
    history = [json.loads(line) for line in LOG.read_text().splitlines()]
    kept = int(np.argmin([h["loss"] for h in history]))
    fig = learning_figure(history, kept, ["mu", "stiffness", "damping"], "cube")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "training PSNR", "mu", "stiffness", "damping"]
    for ax, name in zip(fig.axes, ["loss", "psnr", "mu", "stiffness", "damping"]):
        curve, dot = ax.lines[0], ax.lines[-1]
        np.testing.assert_allclose(curve.get_ydata(), [h[name] for h in history])
        assert dot.get_xdata()[0] == history[kept]["iteration"] and dot.get_ydata()[0] == history[kept][name]
    assert len(learning_figure(history, 0).axes) == 6  # by default every parameter in the log, mass too
    path = plot_learning(history, tmp_path / "learn.png", kept)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="kept"):
        learning_figure(history, len(history))
    with pytest.raises(ValueError, match="parameters"):
        learning_figure(history, 0, ["inertia"])


def test_learning_plot_has_a_row_per_stage_and_held_out_dots():
    """A free object's log (identify, then refine: different losses, PSNR in refine only) gets a row
    per stage with the kept candidate marked in its own row only; a LEAP log its held-out scores."""
    identify = [{"stage": "identify", "iteration": i, "loss": 10.0 / (i + 1), "fit": 1.0, "continuity": 0.0,
                 "mu": 0.3 + 0.01 * i, "stiffness": 2500.0 + i, "damping": 100.0 - i} for i in range(4)]
    refine = [{"stage": "refine", "iteration": i, "loss": 0.07 - 0.001 * i, "psnr": 21.0 + 0.1 * i, "mass": 0.1,
               "mu": 0.33 + 0.01 * i, "stiffness": 2503.0 - i, "damping": 97.0 + i, "seconds": 1.0} for i in range(3)]
    history = identify + refine
    assert kept_record(history, {"kept": "initial"}) == 0 and kept_record(history, {"kept": "identified"}) == 3
    assert kept_record(history, {"kept": "refined", "refined_iteration": 1}) == 5
    with pytest.raises(ValueError, match="kept"):
        kept_record(history, {"kept": "best"})
    fig = learning_figure(history, 5, ["mu", "stiffness", "damping"])
    assert [ax.get_title() for ax in fig.axes] == [
        *(f"identify (tracks): {n}" for n in ("loss", "mu", "stiffness", "damping")),
        *(f"refine (images): {n}" for n in ("loss", "training PSNR", "mu", "stiffness", "damping"))]
    assert all(len(ax.lines) == 1 for ax in fig.axes[:4])  # the curve only: the kept iterate is refine's
    for ax, name in zip(fig.axes[4:], ["loss", "psnr", "mu", "stiffness", "damping"]):
        np.testing.assert_allclose(ax.lines[0].get_ydata(), [h[name] for h in refine])
        assert ax.lines[-1].get_xdata()[0] == 1 and ax.lines[-1].get_ydata()[0] == refine[1][name]
    leap = [{"iteration": i, "loss": 0.02 - 0.001 * i, "psnr": 27.0 + 0.1 * i, "mu": 0.2, "stiffness": 40.0,
             "damping": 1.0, "lr": 0.05, **({"held_out_loss": 0.03 - 0.001 * i, "held_out_psnr": 25.0 + 0.2 * i}
                                            if i % 5 == 0 else {})} for i in range(11)]
    fig = learning_figure(leap, kept_record(leap, {"best_iteration": 5}))
    assert [ax.get_title() for ax in fig.axes] == ["loss", "training PSNR", "mu", "stiffness", "damping"]
    held = fig.axes[1].lines[1]  # after the training curve
    assert list(held.get_xdata()) == [0, 5, 10] and list(held.get_ydata()) == [25.0, 26.0, 27.0]
