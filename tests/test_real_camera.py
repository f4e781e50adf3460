"""From a real-looking camera to datasets (issue 31): the software camera's sensor and depth,
depth files and their alignment, `cgwm segment` against the hidden truth, ChArUco poses and
`cgwm capture views`, and `cgwm play --virtual --background` through the real-looking camera."""

import json
import math
import shutil

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from cgwm_env.cli import main
from cgwm_env.data.camera_model import CameraModel, Sensor, SoftwareCamera
from cgwm_env.data.capture import Board, board_pose, load_session
from cgwm_env.data.dataset import load_dataset, off_clock_frames
from cgwm_env.data.depth import align_depth, dataset_depth, load_depth, save_depth
from cgwm_env.data.synth_capture import synth_capture
from cgwm_env.envs.leap.clips import synth_leap
from cgwm_env.learn.clips import load_clip
from cgwm_env.render.camera import Camera
from hardware.playback import save_trajectory


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame IoU of (T, H, W) bool masks (1 where both are empty)."""
    union = (a | b).sum((1, 2))
    return np.where(union > 0, (a & b).sum((1, 2)) / np.maximum(union, 1), 1.0)


@pytest.fixture(scope="module")
def leap_clip(tmp_path_factory):
    """A 12-frame LEAP Hand clip of the cube through the real-looking camera, and its truth."""
    root = tmp_path_factory.mktemp("leap")
    folder = synth_leap("cube", root / "clip_000", frames=12, seed=(0, 0, 0), size=96, software=SoftwareCamera(seed=0))
    return folder, dict(np.load(root / "truth" / "clip_000.npz"))


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """Four views of the cube on a ChArUco board (images/, intrinsics.json, depth.npz, truth.npz)."""
    return synth_capture("cube", tmp_path_factory.mktemp("capture") / "session", views=4, width=320, height=240)


# ----------------------------------------------------------------------------- the software camera


def test_sensor_depth_noise_grows_with_range_and_near_range_has_no_depth():
    model = CameraModel(speckle=0.0)
    fx = 200.0
    stds = []
    for z in (0.3, 0.6):
        depth = Sensor(model, seed=1).depth(np.full((60, 80), z), fx)
        assert (depth > 0).mean() > 0.9  # a flat wall is measured
        stds.append(depth[depth > 0].std())
        assert abs(np.median(depth[depth > 0]) - z) < 0.003
    # stereo: sigma_z = z^2 sigma_d / (f b), four times at twice the range
    assert 3.0 < stds[1] / stds[0] < 5.3
    too_near = 0.5 * fx * model.baseline / model.max_disparity
    assert (Sensor(model).depth(np.full((10, 10), too_near), fx) == 0).all()


def test_sensor_colour_drifts_within_its_limit():
    model = CameraModel(read_noise=0.0, shot_noise=0.0)
    sensor = Sensor(model, seed=3)
    grey = np.full((4, 4, 3), 100, np.uint8)
    means = np.array([sensor.color(grey).reshape(-1, 3).mean(0) for _ in range(200)])
    assert means.std(0).min() > 1.0  # exposure and white balance move from frame to frame
    # each channel's log gain is exposure + balance, each held within drift_limit
    assert np.abs(np.log(means / 100)).max() <= 2 * model.drift_limit + 0.01


# ----------------------------------------------------------------------------- depth files


def test_depth_file_round_trip_and_alignment_to_colour(tmp_path):
    colour = Camera(100.0, 100.0, 40.0, 30.0, 80, 60, torch.eye(4))
    depth_cam = Camera(60.0, 60.0, 24.0, 18.0, 48, 36, torch.eye(4))
    T = np.eye(4)
    T[0, 3] = 0.05  # the depth camera 5 cm to the colour camera's right
    z = np.full((36, 48), 1.0, np.float32)
    z[14:22, 20:28] = 0.5  # a box 0.5 m away, the wall 1 m
    save_depth(tmp_path / "depth.npz", z[None], depth_cam, T)
    loaded = load_depth(tmp_path / "depth.npz")
    np.testing.assert_array_equal(loaded.depth[0], z)
    np.testing.assert_allclose(loaded.T_color_depth, T)
    aligned = loaded.aligned(colour)[0]
    # same field of view, shifted 5 cm: at 1 m the depth grid misses the colour's leftmost 5/80
    assert aligned.shape == (60, 80) and 0.85 < (aligned > 0).mean() < 0.95
    assert (aligned[:, :4] == 0).all()
    # the box (depth columns 20-28, x -0.033..0.033 m at 0.5 m) lands at colour x 0.017..0.083 m:
    # u = 100 x / 0.5 + 40 = 43.3..56.7, rows 30 -+ 6.7
    assert np.allclose(aligned[25:35, 45:55], 0.5)
    assert np.allclose(aligned[25:35, 58:62], 1.0) and np.allclose(aligned[25:35, 20:38], 1.0)
    # the wall the colour camera sees left of the box, hidden from the depth camera: u 38.3..43.3
    assert (aligned[25:35, 39:43] == 0).all()
    with pytest.raises(ValueError, match="T_color_depth"):
        save_depth(tmp_path / "bad.npz", z, depth_cam, np.diag([1.0, 1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match=r"depth: expected \(36, 48\)"):
        align_depth(z[:10], depth_cam, colour, T)


# ----------------------------------------------------------------------------- cgwm segment


def test_cgwm_segment_meets_the_issue_targets(leap_clip, tmp_path, capsys):
    source, truth = leap_clip
    folder = tmp_path / "clip"
    shutil.copytree(source, folder)
    assert load_dataset(folder).meta["masks_empty"]
    assert main(["segment", "--data", str(folder)]) == 0
    data = load_dataset(folder)
    assert not data.meta["masks_empty"] and len(data.meta["segmentation"]["confidence"]) == len(data)
    masks = data.masks.numpy() > 0.5
    hand = np.stack([iio.imread(f) > 127 for f in sorted((folder / "hand_masks").glob("*.png"))])
    # issue 31's targets: object IoU >= 0.95 (median over frames, the hand touching it), hand >= 0.9
    assert np.median(iou(masks, truth["masks"])) >= 0.95
    assert np.median(iou(hand, truth["hand_masks"])) >= 0.9
    assert str(folder) in capsys.readouterr().out
    assert len(load_clip(folder)) == len(data)  # stage II takes it now, and refused it before:
    with pytest.raises(ValueError, match="cgwm segment --data"):
        load_clip(source)


def test_cgwm_segment_names_a_frame_it_cannot_segment(leap_clip, tmp_path, capsys):
    source, _ = leap_clip
    folder = tmp_path / "clip"
    shutil.copytree(source, folder)
    # frame 0, before any finger touches the object, replaced by the empty scene: the object is gone
    shutil.copy(folder / "background.png", folder / "frames" / "00000.png")
    depth = load_depth(folder / "depth.npz")
    z = depth.depth.copy()
    z[0] = load_depth(folder / "background_depth.npz").depth
    save_depth(folder / "depth.npz", z, depth.camera, depth.T_color_depth)
    assert main(["segment", "--data", str(folder)]) == 0
    assert "frame 0: unsure: empty mask" in capsys.readouterr().out
    assert "0" in json.loads((folder / "meta.json").read_text())["segmentation"]["unsure_frames"]


def test_cgwm_segment_refuses_a_folder_without_background(leap_clip, tmp_path, capsys):
    folder = tmp_path / "clip"
    shutil.copytree(leap_clip[0], folder)
    (folder / "background.png").unlink()
    before = (folder / "meta.json").read_text()
    assert main(["segment", "--data", str(folder)]) == 2
    assert "background.png" in capsys.readouterr().err
    assert (folder / "meta.json").read_text() == before


def test_off_clock_frames_names_repeats_and_late_frames():
    times = np.arange(8) / 30.0
    frame_time = times + 0.004
    frame_time[5] += 0.03  # taken a frame late
    numbers = np.array([1, 2, 3, 3, 4, 6, 7, 8])  # frame 3 shown again
    assert off_clock_frames({"times": times, "frame_time": frame_time, "frame_number": numbers}, 30.0) == [3, 5]


# ----------------------------------------------------------------------------- capture views


def test_board_poses_meet_the_issue_targets(session):
    images, camera, depths = load_session(session)
    truth = np.load(session / "truth.npz")
    assert len(images) == 4 and depths is not None and depths[0].shape == (240, 320)
    for image, T_true in zip(images, truth["T_cw"]):
        T = board_pose(image, camera, Board()).T_cw
        centre, centre_true = -T[:3, :3].T @ T[:3, 3], -T_true[:3, :3].T @ T_true[:3, 3]
        assert np.linalg.norm(centre - centre_true) < 0.002  # issue 31: 2 mm, 0.5 degrees
        assert math.degrees(Rotation.from_matrix(T[:3, :3] @ T_true[:3, :3].T).magnitude()) < 0.5


def test_cgwm_capture_views_writes_a_multiview_set(session, tmp_path, capsys):
    out = tmp_path / "views"
    assert main(["capture", "views", "--session", str(session), "--out", str(out), "--size", "64", "--object", "cube"]) == 0
    data = load_dataset(out)
    assert data.meta["scenario"] == "multiview" and len(data.cameras) == 4 and data.images.shape[1:3] == (64, 64)
    assert all(m.sum() > 100 for m in data.masks)  # the object in every view
    # the set's world frame is the object's carved centre: within 5 mm of the truth across the board
    truth = np.load(session / "truth.npz")
    centre = np.array(data.meta["object_pose"]["pos"])
    assert np.linalg.norm(centre[:2] - truth["object_pos"][:2]) < 0.005
    assert "4 of 4 views" in capsys.readouterr().out
    assert main(["capture", "views", "--session", str(session), "--out", str(tmp_path / "x"), "--dictionary", "DICT_NONE"]) == 2
    assert "--dictionary: expected a cv2.aruco dictionary name" in capsys.readouterr().err


# ----------------------------------------------------------------------------- cgwm play through the camera


def test_cgwm_play_virtual_real_camera_records_what_segment_needs(tmp_path):
    (tmp_path / "hw.yaml").write_text("camera: {width: 64, height: 48, fps: 30, depth: true}\n"
                                      "virtual: {camera: real, seed: 0, drop_frames: [4], time_scale: 3}\n")
    T = 18
    targets = np.tile(0.2 * np.sin(np.pi * np.arange(T) / T)[:, None], (1, 16))
    save_trajectory(tmp_path / "plan.npz", np.arange(T) / 30.0, targets)
    out = tmp_path / "run"
    assert main(["play", "--trajectory", str(tmp_path / "plan.npz"), "--virtual", "--config", str(tmp_path / "hw.yaml"),
                 "--out", str(out), "--object", "cube", "--background"]) == 0
    data = load_dataset(out)
    assert data.meta["masks_empty"] and len(data.meta["background_joint_pos"]) == 16
    depth, background_depth = dataset_depth(out)
    assert depth.depth.shape[1:] == (144, 256)  # the depth stream's own grid, not the colour's
    assert not np.allclose(depth.T_color_depth, np.eye(4)) and background_depth is not None
    numbers = data.states["frame_number"]
    assert 4 not in numbers and (np.diff(numbers) >= 0).all()  # the dropped frame never came
    truth = np.load(tmp_path / "run.truth.npz")  # beside the recording, not in it
    assert truth["masks"].shape == (T, 48, 64) and truth["masks"].any(axis=(1, 2)).all()
    assert main(["segment", "--data", str(out)]) == 0
    masks = load_dataset(out).masks.numpy() > 0.5
    # at 64x48 px the cube is ~150 px, whose rim is a third of it: 0.88 measured
    assert np.median(iou(masks, truth["masks"])) >= 0.8
