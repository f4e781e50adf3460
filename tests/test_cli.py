import json
from pathlib import Path

import pytest

from cgwm_env.cli import main
from cgwm_env.physics.collision import SoftSDFSettings
from cgwm_env.physics.contact import ContactSettings
from cgwm_env.physics.model import load_model_settings

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_demo_writes_plot_and_summary(tmp_path):
    assert main(["demo", "--scene", "sim", "--out", str(tmp_path), "--seconds", "0.8",
                 "--config", str(CONFIGS / "physics.yaml")]) == 0
    summary = json.loads((tmp_path / "sim_demo.json").read_text())
    assert summary["drop_final_height_mm"] == pytest.approx(25.0, abs=0.5)  # resting on a face
    assert summary["drop_final_tilt_deg"] < 1.0
    # pushed 0.2 m/s over the travel less the 5 mm gap by a mocap pusher sunk (damping v + mu g) /
    # stiffness deep (ContactSettings.pusher), then a slide of at most v^2 / (2 mu g) at mu 0.5
    slide_mm, depth_mm = 1e3 * 0.2**2 / (2 * 0.5 * 9.81), 1e3 * (100 * 0.2 + 0.5 * 9.81) / 2500
    reach_mm = summary["pusher_travel_mm"] - 5.0
    assert reach_mm - depth_mm < summary["push_distance_mm"] < reach_mm + slide_mm
    assert (tmp_path / "sim_demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_settings_file_maps_to_model_settings(tmp_path):
    settings = load_model_settings(CONFIGS / "physics.yaml")
    assert settings["dt"] == 0.002 and settings["gravity"] == (0.0, 0.0, -9.81)
    assert settings["sdf"] == SoftSDFSettings() and settings["contact"] == ContactSettings()
    bad = tmp_path / "bad.yaml"
    bad.write_text("contact:\n  stiffness: 3\n")
    with pytest.raises(ValueError, match="contact.stiffness"):
        load_model_settings(bad)
    bad.write_text("timestep: 0.01\n")
    with pytest.raises(ValueError, match="timestep"):
        load_model_settings(bad)
    with pytest.raises(ValueError, match="path"):
        load_model_settings(tmp_path / "missing.yaml")


def test_bad_input_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err


def test_plan_writes_a_trajectory_that_play_reads(tmp_path, capsys):
    from hardware.playback import load_trajectory

    out = tmp_path / "plan.npz"
    assert main(["plan", "--steps", "4", "--trajectory", str(out)]) == 0
    trajectory = load_trajectory(out)
    assert trajectory.joint_targets.shape == (5, 16) and trajectory.times[1] == pytest.approx(1 / 30)
    assert trajectory.joint_targets[1:].any()  # the approach's first steps
    assert "the world model ends" in capsys.readouterr().out
    assert main(["plan", "--turn", "nan", "--trajectory", str(tmp_path / "none.npz")]) == 2
    assert "--turn" in capsys.readouterr().err and not (tmp_path / "none.npz").exists()


def test_learn_leap_names_a_bad_object_or_call_before_any_work(tmp_path, capsys):
    """`cgwm learn-leap` (and scripts/learn_world_model.sh, which calls it) refuse an object that
    is not in the library before writing anything; the script says its usage."""
    import subprocess
    import sys

    out = tmp_path / "teapot"
    assert main(["learn-leap", "--object", "teapot", "--out", str(out)]) == 2
    assert "--object: expected one of" in capsys.readouterr().err and not out.exists()
    script = Path(__file__).resolve().parents[1] / "scripts" / "learn_world_model.sh"
    run = subprocess.run(["bash", str(script), "cube"], capture_output=True, text=True,
                         env={"CGWM": str(Path(sys.executable).parent / "cgwm")})
    assert run.returncode == 2 and "usage:" in run.stderr
