"""Stage II (stage2.py), the WorldModel bundle and `cgwm eval`, at small image sizes."""

import dataclasses
import json
import math

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from cgwm_env.learn import evaluate, run, stage2
from cgwm_env.learn.clips import Clip, clip_paths, load_clip
from cgwm_env.learn.initial_state import estimate_pose, rest_on_plane
from cgwm_env.learn.losses import ImageLoss, LoftrFeatureLoss
from cgwm_env.learn.settings import PARAMETERS, LearnSettings
from cgwm_env.learn.world_model import WorldModel, predict_states, render_states
from cgwm_env.physics.contact import ContactSettings
from cgwm_env.physics.gaussians import SphereGaussians, box_gaussians
from cgwm_env.physics.model import PhysicalParams, State, box_model, solid_box_inertia
from cgwm_env.render import render
from cgwm_env.render.camera import Camera, look_at
from cgwm_env.render.metrics import e_rot, e_trans

SIZE, FPS, SUB, FRAMES = 48, 30.0, 8, 12
MU, K, D = 0.5, 10.0, 1.0  # plain gains: K N/m and D N s/m per row; K shows as the resting sink
PLAIN = dict(contact=ContactSettings(gain_mode="plain"))


def _truth_model():
    return box_model(0.05, 0.1, MU, per_edge=5, stiffness=K, damping=D, dt=1.0 / (FPS * SUB), **PLAIN)


def _clip(start: State, name: str) -> Clip:
    """A clip drawn by our simulator and renderer with the true parameters."""
    model = _truth_model()
    camera = Camera.from_fovy(math.radians(40), SIZE, SIZE, look_at((0.05, -0.25, 0.08), (0.05, 0.0, 0.02)))
    background = torch.full((SIZE, SIZE, 3), 0.8)
    with torch.no_grad():
        states = predict_states(model, start, FRAMES, SUB)
        images = render_states(model.gaussians, states.position[0], states.quat[0], camera, background).clamp(0, 1)
    return Clip(name, images, torch.ones(FRAMES, SIZE, SIZE), camera, background, FPS, "fall", "box",
                       truth=states)


@pytest.fixture(scope="module")
def learned():
    torch.manual_seed(0)
    train_start = State.make([[0.0, 0.0, 0.03]], velocity=[[0.5, 0.0, 0.0]])
    train = _clip(train_start, "train")
    initial = PhysicalParams.from_values(0.1, solid_box_inertia(0.1, 0.05), MU - 0.3, K / 3, D)
    settings = LearnSettings(iterations=80, parameters=tuple(PARAMETERS), lr=0.1, window=0)
    wm, history = stage2.learn(_truth_model().gaussians, [train], initial, settings, progress=False,
                               model_kwargs=PLAIN, starts=[train_start])
    return wm, history, initial


def test_learning_recovers_mu_and_stiffness(learned):
    wm, history, _ = learned
    mu, k = float(wm.params.mu), float(wm.params.stiffness)
    print(f"mu {MU - 0.3} -> {mu:.3f} (truth {MU}); K {K / 3:.2f} -> {k:.2f} (truth {K}); "
          f"PSNR {history[0]['psnr']:.1f} -> {history[wm.info['best_iteration']]['psnr']:.1f} dB")
    assert abs(mu - MU) < 0.06  # started 0.3 off
    assert abs(math.log(k / K)) < math.log(1.5)  # started a factor 3 off
    assert history[wm.info["best_iteration"]]["psnr"] > history[0]["psnr"] + 10.0


def test_only_the_chosen_parameters_are_learned():
    start = State.make([[0.0, 0.0, 0.03]], velocity=[[0.5, 0.0, 0.0]])
    clip = _clip(start, "train")
    initial = PhysicalParams.from_values(0.1, solid_box_inertia(0.1, 0.05), MU - 0.3, K / 3, D)
    settings = LearnSettings(iterations=3, parameters=("mu",), lr=0.1, sdf_beta=5000.0)
    wm, _ = stage2.learn(_truth_model().gaussians, [clip], initial, settings, progress=False, model_kwargs=PLAIN,
                         starts=[start])
    assert float(wm.params.mu) != pytest.approx(MU - 0.3, abs=1e-3)
    assert wm.sdf.beta == 5000.0  # the learned model keeps the soft distance it was learned with
    for kept, first in zip(wm.params.tensors(), initial.tensors()):
        if kept is not wm.params.mu_raw:
            torch.testing.assert_close(kept, first)
    with pytest.raises(ValueError, match="parameters: expected distinct names"):
        LearnSettings(parameters=("mu", "restitution"))


def test_a_step_that_makes_the_rollout_diverge_stops_learning_and_keeps_the_best(monkeypatch):
    start = State.make([[0.0, 0.0, 0.03]], velocity=[[0.5, 0.0, 0.0]])
    clip = _clip(start, "train")
    initial = PhysicalParams.from_values(0.1, solid_box_inertia(0.1, 0.05), MU - 0.3, K / 3, D)
    clips_loss, calls = stage2.clips_loss, []

    def diverging_on_the_third_call(*args):
        calls.append(1)
        if len(calls) == 3:
            raise ValueError("q: expected finite angles, got NaN or inf")
        return clips_loss(*args)

    monkeypatch.setattr(stage2, "clips_loss", diverging_on_the_third_call)
    settings = LearnSettings(iterations=5, parameters=("mu",), lr=0.1)
    wm, history = stage2.learn(_truth_model().gaussians, [clip], initial, settings, progress=False,
                               model_kwargs=PLAIN, starts=[start])
    assert wm.info["stopped"].startswith("iteration 2: the rollout went non-finite (q: expected finite")
    assert len(history) == 2 and wm.info["best_iteration"] in (0, 1)
    assert float(wm.params.mu) == pytest.approx(history[wm.info["best_iteration"]]["mu"])
    monkeypatch.setattr(stage2, "clips_loss", lambda *args: (torch.tensor(float("nan")), [0.0]))
    with pytest.raises(ValueError, match="params: the initial parameters give a non-finite image loss"):
        stage2.learn(_truth_model().gaussians, [clip], initial, settings, progress=False, model_kwargs=PLAIN,
                     starts=[start])


def test_learned_model_predicts_a_held_out_clip_better(learned):
    wm, _, initial = learned
    start = State.make([[0.0, 0.01, 0.035]], velocity=[[0.35, 0.1, 0.0]])
    held = _clip(start, "held")
    errors = {}
    for name, params in (("initial", initial), ("learned", wm.params)):
        with torch.no_grad():
            states = predict_states(wm.model(params=params), start, FRAMES, SUB)
        errors[name] = float(e_trans(held.truth.position, states.position))
    print(f"held-out E_trans: initial {errors['initial'] * 100:.2f} cm, learned {errors['learned'] * 100:.2f} cm")
    assert errors["learned"] < 0.6 * errors["initial"]


def test_world_model_bundle_round_trips(learned, tmp_path):
    wm, _, _ = learned
    wm.save(tmp_path / "wm")
    back = WorldModel.load(tmp_path / "wm")
    for a, b in zip(wm.params.tensors(), back.params.tensors()):
        torch.testing.assert_close(a, b)
    for a, b in zip(wm.gaussians.tensors(), back.gaussians.tensors()):
        torch.testing.assert_close(a, b)
    assert back.contact.gain_mode == "plain" and back.dt == wm.dt and back.initial_gaussians is not None
    model = back.model(params=back.initial_params)
    torch.testing.assert_close(model.params.mu, wm.initial_params.mu)
    start = State.make([[0.0, 0.0, 0.03]])
    torch.testing.assert_close(predict_states(back.model(), start, 3, SUB).position,
                               predict_states(wm.model(), start, 3, SUB).position)


def test_bundle_loader_names_what_is_wrong(learned, tmp_path):
    wm, _, _ = learned
    folder = wm.save(tmp_path / "wm")
    with pytest.raises(ValueError, match="path"):
        WorldModel.load(tmp_path / "missing")
    doc = json.loads((folder / "world_model.json").read_text())
    bad = dict(doc, params={"raw": {**doc["params"]["raw"], "mu_raw": [1.0, 2.0]}})
    (folder / "world_model.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="mu_raw"):
        WorldModel.load(folder)
    (folder / "world_model.json").write_text(json.dumps(dict(doc, dt=-1)))
    with pytest.raises(ValueError, match="dt"):
        WorldModel.load(folder)
    (folder / "world_model.json").write_text(json.dumps(dict(doc, gaussians="../elsewhere.npz")))
    with pytest.raises(ValueError, match="gaussians"):
        WorldModel.load(folder)
    (folder / "world_model.json").write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        WorldModel.load(folder)
    (folder / "world_model.json").write_text(json.dumps(doc))
    (folder / "gaussians.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="npz"):
        WorldModel.load(folder)
    with pytest.raises(ValueError, match="not a Model field"):
        wm.model(stiffness=3.0)


def test_corrupt_inputs_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="lambda_structure"):
        LearnSettings(lambda_structure=2.0)
    with pytest.raises(ValueError, match="loftr_weights"):
        LearnSettings(structure="loftr")
    with pytest.raises(ValueError, match="sdf_beta"):
        LearnSettings(sdf_beta=0.0)
    with pytest.raises(ValueError, match="loftr_weights"):
        LoftrFeatureLoss(tmp_path / "none.ckpt")
    with pytest.raises(ValueError, match="data"):
        clip_paths(tmp_path / "nothing", "train")
    with pytest.raises(ValueError, match="data"):
        clip_paths(tmp_path, "train")
    g = SphereGaussians.from_spheres(torch.zeros(1, 3), 0.01)
    with pytest.raises(ValueError, match="clips"):
        stage2.learn(g, [], PhysicalParams.from_values(0.1, [1e-5] * 3, 0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="gaussians"):
        run.run_learn(tmp_path, tmp_path / "g.txt", tmp_path / "out")
    with pytest.raises(ValueError, match="mass"):
        stage2.volume_inertia(g, -1.0)
    start = State.make([[0.0, 0.0, 0.1]])
    with pytest.raises(ValueError, match="pusher_velocity"):
        predict_states(_truth_model(), start, 3, 2, torch.zeros(1, 5, 3))
    clip = _clip(start, "blank")
    blank = dataclasses.replace(clip, masks=torch.zeros_like(clip.masks))
    with pytest.raises(ValueError, match="mask of frame 0 is empty"):
        estimate_pose(_truth_model().gaussians, blank, 0)


def test_pose_estimate_finds_the_true_pose():
    start = State.make([[0.01, 0.0, 0.06]], quat=[[0.9, 0.3, -0.2, 0.25]])
    start = start._replace(quat=start.quat / start.quat.norm())
    clip = _clip(start, "pose")
    alpha = render(_truth_model().gaussians, clip.camera, pose=(start.position[0], start.quat[0])).alpha
    clip = dataclasses.replace(clip, masks=(alpha > 0.5).float().expand(FRAMES, SIZE, SIZE))
    settings = LearnSettings()
    position, quat, _ = estimate_pose(_truth_model().gaussians, clip, 0, settings)
    angle = 2 * math.acos(min(1.0, abs(float((quat * start.quat[0]).sum()))))
    print(f"pose error {float((position - start.position[0]).norm()) * 1e3:.1f} mm, {angle:.3f} rad")
    assert float((position - start.position[0]).norm()) < 5e-3 and angle < 0.15


@pytest.mark.parametrize("yaw", [-2.5, 0.4, 2.0, 3.0])
def test_pose_estimate_finds_a_resting_l_shape_at_any_yaw(yaw):
    # An L whose body origin lies 1.6 cm from its centroid. 128 candidates, each placed with its body
    # origin on the mask's ray (before 2026-12-05), left it 0.7-2.1 rad off at every one of these yaws.
    bar, block = box_gaussians((0.06, 0.02, 0.02), per_edge=12), box_gaussians((0.02, 0.02, 0.02), per_edge=4)
    body = SphereGaussians(torch.cat((bar.centers + torch.tensor([0.0, 0.0, 0.01]),
                                      block.centers + torch.tensor([0.02, 0.0, 0.03]))),
                           torch.cat((bar.log_scales, block.log_scales)),
                           torch.cat((bar.opacity_logits, block.opacity_logits)), torch.cat((bar.colors, block.colors)))
    camera = Camera.from_fovy(math.radians(40), SIZE, SIZE, look_at((0.05, -0.25, 0.08), (0.05, 0.0, 0.02)))
    background = torch.full((SIZE, SIZE, 3), 0.8)
    quat, position = torch.tensor([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]), torch.tensor([0.03, 0.01, 0.0])
    with torch.no_grad():
        out = render(body, camera, pose=(position, quat), background=background)
    clip = Clip("l", out.rgb.clamp(0, 1)[None], (out.alpha > 0.5).float()[None], camera, background, FPS,
                       "push", "l")
    found, turn, _ = estimate_pose(body, clip, 0, LearnSettings())
    found = rest_on_plane(body, camera, found, turn, 0.0)
    angle = 2 * math.acos(min(1.0, abs(float((turn * quat).sum()))))
    print(f"yaw {yaw}: pose error {float((found - position).norm()) * 1e3:.1f} mm, {angle:.3f} rad")
    assert angle < 0.15 and float((found - position).norm()) < 5e-3


def test_a_resting_pose_off_along_the_camera_ray_is_put_back_on_the_ground():
    model = _truth_model()
    camera = Camera.from_fovy(math.radians(40), SIZE, SIZE, look_at((0.05, -0.25, 0.08), (0.05, 0.0, 0.02)))
    quat = torch.tensor([math.cos(0.3), 0.0, 0.0, math.sin(0.3)])  # upright, turned 0.6 rad about z
    resting = torch.tensor([0.02, 0.01, 0.025])  # the box's spheres touch the ground at z = 0
    deep = resting + 0.004 * (resting - camera.position) / (resting - camera.position).norm()  # 4 mm too far
    back = rest_on_plane(model.gaussians, camera, deep, quat, 0.0)
    np.testing.assert_allclose(back.numpy(), resting.numpy(), atol=1e-6)


def test_volume_inertia_of_a_box_shell_is_the_solid_boxs():
    g = box_model(0.05, 0.1, 0.5, per_edge=8).gaussians
    inertia = stage2.volume_inertia(g, 0.1)
    expected = torch.diag(solid_box_inertia(0.1, 0.05))
    torch.testing.assert_close(inertia, expected, rtol=0.08, atol=1e-7)


def test_learning_variables_map_to_params_with_exact_gradients():
    params = PhysicalParams.from_values(0.2, torch.tensor([[2e-4, 1e-5, 0.0], [1e-5, 3e-4, 2e-5], [0.0, 2e-5, 1e-4]]),
                                        0.4, 0.6, 0.3, dtype=torch.float64)
    leaves = stage2.to_leaves(params)
    back = stage2.from_leaves(leaves)
    torch.testing.assert_close(back.inertia, params.inertia)
    variables = [t.detach().clone().requires_grad_() for t in leaves]

    def inertia(log_diag, relative):
        return stage2.from_leaves([variables[0], log_diag, relative, *variables[3:]]).inertia

    assert torch.autograd.gradcheck(inertia, (variables[1], variables[2]))


def test_image_loss_and_loftr_features(tmp_path):
    from kornia.feature import LoFTR

    torch.manual_seed(0)
    a, b = torch.rand(2, 32, 32, 3), torch.rand(2, 32, 32, 3)
    loss = ImageLoss(LearnSettings(lambda_structure=0.2))
    assert torch.allclose(loss(a, a), torch.zeros(2), atol=1e-6) and (loss(a, b) > 0.1).all()
    torch.save({"state_dict": {f"matcher.{k}": v for k, v in LoFTR(pretrained=None).state_dict().items()}},
               tmp_path / "loftr.ckpt")
    loftr = ImageLoss(LearnSettings(structure="loftr", loftr_weights=str(tmp_path / "loftr.ckpt")))
    pred = a.clone().requires_grad_()
    value = loftr(pred, b).sum()
    value.backward()
    assert value > 0 and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert torch.allclose(loftr(b, b), torch.zeros(2), atol=1e-5)
    torch.save({"backbone.nonsense": torch.zeros(1)}, tmp_path / "bad.ckpt")
    with pytest.raises(ValueError, match="loftr_weights"):
        LoftrFeatureLoss(tmp_path / "bad.ckpt")


def test_eval_table_lists_every_method():
    row = {"object": "cube", "Ours": {"e_trans": 0.01, "e_rot": 0.02, "e_psnr": 30.0},
           "No_opt": {"e_trans": 0.03, "e_rot": 0.04, "e_psnr": 25.0}}
    table = evaluate.format_table([row, {**row, "object": "duck"}], "fall")
    assert table.startswith("Fall-and-rebound") and "| cube | 0.0100 | 0.0200 | 0.0300 | 0.0400 | 30.00 | 25.00 |" in table
    assert "| **mean** |" in table
    with pytest.raises(ValueError, match="samples"):
        evaluate.CemSettings(samples=1)
    with pytest.raises(ValueError, match="mu_range"):
        evaluate.CemSettings(mu_range=(0.5, 0.1))


@pytest.fixture(scope="module")
def fall_data(tmp_path_factory):
    from cgwm_env.data.synth import synth

    root = tmp_path_factory.mktemp("fall")
    synth("fall", "cube", root / "data", episodes=1, seed=1, size=32)
    return root


def test_mujoco_twin_replays_the_recorded_clip(fall_data):
    clip = load_clip(fall_data / "data" / "test_000")
    physics = clip.physics
    twin = evaluate.MujocoTwin("cube", physics["timestep"], physics["substeps"], False, 2)
    true = np.array([[physics["mass"], physics["friction"], *physics["solref"]]] * 2)
    position, quat = twin.rollout(true, evaluate.first_state(clip), len(clip))
    assert position.shape == (2, len(clip), 3) and quat.shape == (2, len(clip), 4)
    assert float(e_trans(clip.truth.position[0], position[0])) < 2e-3
    # From the drop's float64 start (meta.json) the replay is the recording itself, up to float32
    # output: the twin is MuJoCo's scene, not an approximation of it.
    initial = json.loads((fall_data / "data" / "test_000" / "meta.json").read_text())["initial"]
    exact = State(*(torch.tensor([initial[k]], dtype=torch.float64) for k in ("pos", "quat", "vel", "angvel")),
                  *(x.double() for x in evaluate.first_state(clip)[4:]))
    position, quat = twin.rollout(true[:1], exact, len(clip))
    assert float(e_trans(clip.truth.position[0], position[0])) < 1e-5
    assert float(e_rot(clip.truth.quat[0], quat[0])) < 1e-4
    other = np.array([[physics["mass"], 0.1, 0.03, 1.0]])
    assert float(e_trans(clip.truth.position[0], twin.rollout(other, evaluate.first_state(clip), len(clip))[0][0])) > 2e-3



def test_eval_names_a_method_whose_prediction_diverges_instead_of_scoring_it(fall_data):
    stable = box_model(0.05, 0.1, 0.5, per_edge=5, stiffness=10.0, damping=0.3, dt=1.0 / 480.0, **PLAIN)
    unstable = PhysicalParams.from_values(0.1, solid_box_inertia(0.1, 0.05), 0.5, 10.0, 1e6)  # D h / m >> 2
    wm = WorldModel.from_model(stable, initial_params=unstable)
    result = evaluate.evaluate(wm, fall_data / "data", cem=None, videos=False, progress=False)
    assert list(result["diverged"]) == ["No_opt"] and result["diverged"]["No_opt"][0].endswith("test_000")
    assert "No_opt" not in result and np.isfinite(result["Ours"]["e_trans"])

def test_learn_and_eval_commands_write_their_outputs(fall_data, tmp_path):
    from cgwm_env.cli import main

    gfile = tmp_path / "g.npz"
    box_model(0.05, 0.1, 0.5, per_edge=5).gaussians.save_npz(gfile)
    config = tmp_path / "learn.yaml"
    config.write_text("candidates: 4\ntrack_iterations: 2\nidentify_iterations: 3\ninitial:\n  mu: 0.3\n")
    model = tmp_path / "model"
    assert main(["learn", "--data", str(fall_data / "data"), "--gaussians", str(gfile), "--out", str(model),
                 "--config", str(config), "--iterations", "2", "--pusher", "driven"]) == 0
    log = [json.loads(line) for line in (model / "learn_log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log if r["stage"] == "identify"] == [0, 1, 2, 3]
    assert [r["iteration"] for r in log if r["stage"] == "refine"] == [0, 1, 2]
    assert log[0]["mu"] == pytest.approx(0.3, abs=1e-5)
    wm = WorldModel.load(model)
    assert wm.contact.pusher == "driven"  # the bundle keeps how its pusher moves
    assert wm.info["kept"] in wm.info["validation_error"] and len(wm.info["initial_states"]) == 1
    assert np.isfinite(wm.info["tracks"][0]["error_median_m"])
    errors = wm.info["identified_log_standard_error"]  # how well the tracks tell each parameter, None: not at all
    assert set(errors) == {"mu", "stiffness", "damping"} and all(e is None or e > 0 for e in errors.values())
    plot = imageio.imread(model / "learning.png")  # identification's row above refinement's
    assert plot.ndim == 3 and plot.shape[0] > 0.3 * plot.shape[1] and not (model / "psnr.png").exists()
    assert wm.info["refined_iteration"] in [r["iteration"] for r in log if r["stage"] == "refine"]
    assert main(["eval", "--model", str(model), "--data", str(fall_data / "data"), "--cem-iterations", "1",
                 "--cem-samples", "4"]) == 0
    result = json.loads((model / "eval" / "eval.json").read_text())
    for method in ("Ours", "No_opt", "CEM+MuJoCo+R"):
        assert np.isfinite(result[method]["e_trans"]) and result[method]["e_psnr"] > 5.0
    assert "| cube |" in (model / "eval" / "table.md").read_text()
    assert (model / "eval" / "test_000.gif").read_bytes()[:3] == b"GIF"
    bad = tmp_path / "bad.yaml"
    bad.write_text("iterashuns: 3\n")
    assert main(["learn", "--data", str(fall_data / "data"), "--gaussians", str(gfile), "--out", str(model),
                 "--config", str(bad)]) == 2
