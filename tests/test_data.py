"""Data synthesis, the object library and the dataset format."""

import json
import shutil

import mujoco
import numpy as np
import pytest
import torch

from cgwm_env.cli import main
from cgwm_env.data import synth
from cgwm_env.data.dataset import load_dataset, save_dataset
from cgwm_env.data.objects import OBJECTS, get_object
from cgwm_env.physics import math3d


@pytest.fixture(scope="module")
def fall_clip(tmp_path_factory):
    return synth.synth_fall("lblock", tmp_path_factory.mktemp("fall") / "clip", frames=6, seed=3, size=48)


def test_library_has_the_required_objects():
    assert {"cube", "cup", "duck", "lblock", "mug", "bottle"} <= set(OBJECTS)
    for obj in OBJECTS.values():
        assert 0.01 < obj.mass < 0.5 and 0.03 < obj.size < 0.07, obj.name
        assert len({g.rgba for g in obj.geoms}) >= 3, f"{obj.name}: too few colours to see rotation"
    with pytest.raises(ValueError, match="object"):
        get_object("teapot")


def test_clip_round_trips_through_the_format(tmp_path):
    rng = np.random.default_rng(0)
    T, H, W = 4, 24, 32
    images = rng.integers(0, 256, (T, H, W, 3), dtype=np.uint8)
    masks = rng.uniform(size=(T, H, W)) < 0.3
    states = {"times": np.arange(T) / 30.0, "object_pos": rng.normal(size=(T, 3)),
              "object_quat": math3d.quat_normalize(torch.randn(T, 4, dtype=torch.float64)).numpy(),
              "pusher_vel": rng.normal(size=(T, 3)), "joint_target": rng.normal(size=(T, 16)).astype(np.float32)}
    hand_masks = rng.uniform(size=(T, H, W)) < 0.2
    T_cw = np.eye(4)
    T_cw[:3, :3] = math3d.quat_to_matrix(math3d.quat_normalize(torch.tensor([0.9, 0.1, -0.3, 0.2]))).numpy()
    T_cw[:3, 3] = (0.01, -0.02, 0.4)
    camera = {"fx": 40.5, "fy": 41.0, "cx": 16.2, "cy": 11.9, "T_cw": T_cw.tolist()}
    meta = {"scenario": "push", "object": "cube", "fps": 30.0, "cameras": [camera], "physics": {"mass": 0.1}}
    with pytest.raises(ValueError, match=r"hand_masks: expected shape \(4, 24, 32\)"):
        save_dataset(tmp_path / "bad", meta, images, masks, states, hand_masks[:, 1:])
    save_dataset(tmp_path / "clip", meta, images, masks, states, hand_masks)
    data = load_dataset(tmp_path / "clip")
    assert torch.equal(data.hand_masks, torch.from_numpy(hand_masks).float())
    assert data.images.dtype == torch.float32 and data.images.shape == (T, H, W, 3)
    assert torch.equal(data.images, torch.from_numpy(images).float() / 255)
    assert torch.equal(data.masks, torch.from_numpy(masks).float())
    assert data.states.keys() == states.keys()
    for key, value in states.items():
        np.testing.assert_array_equal(data.states[key], value)
    assert len(data.cameras) == T and (data.cameras[0].width, data.cameras[0].height) == (W, H)
    for cam in data.cameras:
        assert torch.equal(cam.T_cw, torch.tensor(T_cw, dtype=torch.float32))
        intrinsics = torch.stack((cam.fx, cam.fy, cam.cx, cam.cy))
        assert torch.equal(intrinsics, torch.tensor([40.5, 41.0, 16.2, 11.9], dtype=torch.float32))
    assert data.meta["num_frames"] == T and data.meta["physics"] == {"mass": 0.1}


def test_synthetic_clip_is_consistent(fall_clip):
    data = load_dataset(fall_clip)
    s, fps = data.states, data.meta["fps"]
    assert data.meta["scenario"] == "fall" and len(data) == 6 and data.background.shape == (48, 48, 3)
    np.testing.assert_allclose(s["object_pos"][0], data.meta["initial"]["pos"], atol=1e-12)
    assert (data.masks.sum((1, 2)) > 10).all()
    # the first frame interval is free flight: velocities are world-frame and consistent with the poses
    g = np.array(synth.GRAVITY)
    drop = 0.5 * g / fps**2 * (1 + 1 / synth.SUBSTEPS)  # semi-implicit Euler over SUBSTEPS steps
    np.testing.assert_allclose(s["object_pos"][1], s["object_pos"][0] + s["object_vel"][0] / fps + drop, atol=1e-6)
    q1 = math3d.quat_integrate(torch.tensor(s["object_quat"][0]), torch.tensor(s["object_angvel"][0]), 1 / fps)
    assert float(math3d.quat_angle(q1, torch.tensor(s["object_quat"][1]))) < 0.03
    # the object in the mask is where the camera projects its recorded position
    uv, _ = data.cameras[0].project(torch.tensor(s["object_pos"], dtype=torch.float32))
    rows, cols = uv[:, 1].long(), uv[:, 0].long()
    assert data.masks[torch.arange(len(data)), rows, cols].all()


def _broken(src, tmp_path, name, edit):
    dst = tmp_path / name
    shutil.copytree(src, dst)
    edit(dst)
    return dst


def _edit_meta(change):
    def edit(path):
        meta = json.loads((path / "meta.json").read_text())
        change(meta)
        (path / "meta.json").write_text(json.dumps(meta))
    return edit


def _edit_states(key, change):
    def edit(path):
        with np.load(path / "states.npz", allow_pickle=False) as npz:
            states = dict(npz)
        states[key] = change(states[key])
        np.savez(path / "states.npz", **states)
    return edit


def _set_nan(a):
    a = a.copy()
    a[2, 0] = np.nan
    return a


@pytest.mark.parametrize("name, edit, message", [
    ("missing_frame", lambda p: (p / "frames" / "00003.png").unlink(), r"frames/00003\.png: missing frame 3"),
    ("missing_mask", lambda p: (p / "masks" / "00000.png").unlink(), r"masks/00000\.png: missing frame 0"),
    ("extra_frame", lambda p: shutil.copy(p / "frames" / "00000.png", p / "frames" / "00006.png"),
     r"unexpected file 00006\.png"),
    ("camera_shape", _edit_meta(lambda m: m["cameras"][0].update(T_cw=m["cameras"][0]["T_cw"][:3])),
     r"cameras\[0\]\.T_cw: expected shape \(4, 4\), got \(3, 4\)"),
    ("camera_nan", _edit_meta(lambda m: m["cameras"][0]["T_cw"][1].__setitem__(3, float("nan"))),
     r"cameras\[0\]\.T_cw: expected finite values"),
    ("camera_count", _edit_meta(lambda m: m.update(cameras=m["cameras"] * 2)), r"cameras: expected a list of 1"),
    ("no_fps", _edit_meta(lambda m: m.pop("fps")), r"fps: a clip"),
    ("wrong_size", _edit_meta(lambda m: m.update(width=64)),
     r"frames/00000\.png: expected an RGB uint8 image of shape \(48, 64, 3\), got \(48, 48, 3\)"),
    ("pose_nan", _edit_states("object_pos", _set_nan), r"states\.npz: object_pos: NaN or inf at frame 2"),
    ("quat_not_unit", _edit_states("object_quat", lambda q: 2 * q), r"object_quat: expected unit quaternions"),
    ("short_states", _edit_states("object_vel", lambda v: v[:-1]),
     r"object_vel: expected shape \(6, 3\) \(num_frames = 6\), got \(5, 3\)"),
    ("missing_meta", lambda p: (p / "meta.json").unlink(), r"meta\.json: missing"),
])
def test_broken_dataset_names_the_problem(fall_clip, tmp_path, name, edit, message):
    with pytest.raises(ValueError, match=message):
        load_dataset(_broken(fall_clip, tmp_path, name, edit))


def test_mass_and_inertia_are_mujocos():
    for obj in OBJECTS.values():
        model = mujoco.MjModel.from_xml_string(synth.scene_xml(obj, 32, pusher=True))
        body = model.body("object").id
        R = np.zeros(9)
        mujoco.mju_quat2Mat(R, model.body_iquat[body])
        R = R.reshape(3, 3)
        assert obj.mass == pytest.approx(model.body_mass[body], rel=1e-9)
        np.testing.assert_allclose(obj.inertia, R @ np.diag(model.body_inertia[body]) @ R.T, rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(model.body_ipos[body], 0.0, atol=1e-9)  # body frame at the centre of mass
        np.testing.assert_allclose(obj.com, model.body_ipos[body], atol=1e-12)
    cube = OBJECTS["cube"]  # and against the closed form of a solid 5 cm cube
    assert cube.mass == pytest.approx(800.0 * 0.05**3)
    np.testing.assert_allclose(cube.inertia, np.eye(3) * cube.mass * 0.05**2 / 6, rtol=1e-9)


def test_sample_surface_lies_on_the_mujoco_geometry():
    directions = np.array([d for d in np.ndindex(3, 3, 3) if d != (1, 1, 1)], float) - 1.0
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    for obj in OBJECTS.values():
        xml = (f'<mujoco><worldbody>{obj.mjcf("object")}<body name="probe" mocap="true">'
               '<geom type="sphere" size="1e-6" contype="0" conaffinity="0"/></body></worldbody></mujoco>')
        model = mujoco.MjModel.from_xml_string(xml)
        data = mujoco.MjData(model)
        geoms = np.flatnonzero(model.geom_bodyid == model.body("object").id)
        probe = model.body("probe").geomadr[0]

        def distance(p):  # signed distance of p to the union of the object's geoms, from MuJoCo
            data.mocap_pos[0] = p
            mujoco.mj_kinematics(model, data)
            return min(mujoco.mj_geomDistance(model, data, probe, g, 0.01, None) for g in geoms) + 1e-6

        points = obj.sample_surface(40, seed=1)
        assert points.shape == (40, 3)
        on_surface = [abs(distance(p)) < 2e-5 for p in points]
        free_nearby = [any(distance(p + 3e-4 * d) > 1e-5 for d in directions) for p in points]
        assert all(on_surface), obj.name
        assert np.mean(free_nearby) >= 0.95, f"{obj.name}: points inside the union (shared faces?)"
        assert abs(distance(1.3 * points[0])) > 1e-3  # the check itself tells off-surface points
    # uniform over the area: a cube's six faces get a sixth each
    p = OBJECTS["cube"].sample_surface(6000)
    axis = np.argmax(np.abs(p), axis=1)
    counts = np.bincount(axis * 2 + (p[np.arange(6000), axis] > 0), minlength=6)
    assert counts.min() > 850 and counts.max() < 1150


def test_multiview_masks_match_projected_surface(tmp_path):
    path = synth.synth_multiview("mug", tmp_path / "views", n_views=6, size=64, seed=0)
    data = load_dataset(path)
    assert len(data) == 6 and data.states is None
    centres = torch.stack([cam.position for cam in data.cameras])
    dirs = centres / centres.norm(dim=1, keepdim=True)
    assert (dirs @ dirs.T - torch.eye(6)).max() < 0.6  # spread over the sphere
    points = torch.tensor(get_object("mug").sample_surface(20000), dtype=torch.float32)
    centre_of = torch.stack(torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij"), -1)
    offsets = []
    for t, cam in enumerate(data.cameras):
        uv, z = cam.project(points)
        assert (z > 0).all()
        cols, rows = uv[:, 0].floor().long(), uv[:, 1].floor().long()
        assert ((cols >= 0) & (cols < 64) & (rows >= 0) & (rows < 64)).all()
        hit = torch.zeros(64, 64)
        hit[rows, cols] = 1.0
        mask = data.masks[t]
        grown = torch.nn.functional.max_pool2d(mask[None, None], 3, 1, 1)[0, 0]
        assert grown[rows, cols].mean() > 0.999 and mask[rows, cols].mean() > 0.9, f"view {t}: points off the mask"
        iou = (hit * mask).sum() / ((hit + mask) > 0).sum()
        assert iou > 0.9, f"view {t}: mask IoU with the projected surface {float(iou):.3f}"
        offsets.append(((centre_of * mask[..., None]).sum((0, 1)) / mask.sum()
                        - (centre_of * hit[..., None]).sum((0, 1)) / hit.sum()).abs().max())
    assert torch.stack(offsets).mean() < 0.3  # px: a half-pixel convention error gives about 0.5


@pytest.mark.parametrize("name", sorted(OBJECTS))
def test_every_object_renders_with_its_colours(name):
    obj = get_object(name)
    scene = synth._Scene(obj, 48, ground=False)
    try:
        scene.set_object((0.0, 0.0, 0.03), (0.92, 0.2, 0.3, 0.1))
        rgb, mask = scene.render()
    finally:
        scene.close()
    assert mask.sum() > 50, f"{name}: empty mask"
    grown = mask | np.roll(mask, 1, 0) | np.roll(mask, -1, 0) | np.roll(mask, 1, 1) | np.roll(mask, -1, 1)
    assert not rgb[~grown].any(), f"{name}: mask misses object pixels (the background is black)"
    palette = np.array([g.rgba[:3] for g in obj.geoms]) * 255
    inner = mask & np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1)
    err = np.abs(rgb[inner][:, None, :].astype(float) - palette[None]).max(-1).min(-1)
    flat = err <= 2  # the others mix two parts' colours along their boundary (antialiasing)
    assert np.mean(flat) > 0.5, f"{name}: pixels are not flat geom colours"
    nearest = np.argmin(np.abs(rgb[inner][:, None, :] - palette[None]).max(-1), 1)
    assert len(np.unique(nearest[flat])) >= 2, f"{name}: one colour only"


def test_synth_command_writes_train_and_test(tmp_path):
    assert main(["synth", "--scenario", "push", "--object", "cube", "--out", str(tmp_path), "--size", "32"]) == 0
    train, test = load_dataset(tmp_path / "train_000"), load_dataset(tmp_path / "test_000")
    assert len(train) == synth.TRAIN_FRAMES and len(test) >= 60 and train.meta["fps"] == test.meta["fps"]
    v_train, v_test = train.states["pusher_vel"][0], test.states["pusher_vel"][0]
    assert np.linalg.norm(v_train) > 0.1 and not np.allclose(v_train, v_test)
    moved = np.linalg.norm(test.states["object_pos"][-1, :2] - test.states["object_pos"][0, :2])
    assert moved > 0.005 and np.abs(test.states["object_vel"][-1, :2]).max() < 0.01  # pushed, then settled
    assert test.masks.sum((1, 2)).min() > 0
    with pytest.raises(ValueError, match="scenario"):
        synth.synth("roll", "cube", tmp_path)


@pytest.mark.parametrize("name", sorted(OBJECTS))
def test_every_object_falls_and_is_pushed_stably(name, tmp_path):
    fall = load_dataset(synth.synth_fall(name, tmp_path / "fall", frames=30, seed=1, size=16))
    push = load_dataset(synth.synth_push(name, tmp_path / "push", frames=30, seed=1, size=16))
    for data in (fall, push):
        assert (data.masks.sum((1, 2)) > 0).all(), f"{name}: left the view in {data.meta['scenario']}"
        assert np.abs(data.states["object_vel"]).max() < 3.0  # a MuJoCo blow-up shows as tens of m/s
    assert np.abs(push.states["object_vel"][0]).max() == 0.0  # the push starts from rest
    assert np.linalg.norm(push.states["object_pos"][-1, :2] - push.states["object_pos"][0, :2]) > 0.01
