"""The front door works as written: every example and every README snippet runs from a folder
other than the repository's (step counts cut by the substitutions below, to stay quick), and the
command line answers without importing torch."""

import re
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import pytest

from cgwm_env.cli import BENCH_SUITES, LEARNED_PARAMETERS, PUSHER_MODES, SYNTH_SCENARIOS, parser

ROOT = Path(__file__).resolve().parents[1]
CGWM = str(Path(sys.executable).parent / "cgwm")
# What each snippet is run with: the same calls with fewer steps, views and iterations.
FASTER = {"max_steps=500": "max_steps=3", "--steps 300": "--steps 3", "--size 96": "--size 32",
          "--size 64": "--size 32", "--grid 30": "--grid 12 --geometry-iterations 3 --appearance-iterations 3 "
          "--mesh-resolution 16", "--episodes 3": "--episodes 1",
          "--config learn_leap.yaml": "--config learn_leap.yaml --iterations 1 --clips 0"}
# README lines that need the real hand or camera.
NEEDS_HARDWARE = ("cgwm calibrate --camera", "cgwm play --trajectory out/plan.npz --camera")


def _run(args: list[str], cwd: Path, timeout: float = 600) -> str:
    return _run_piped(args, cwd, timeout)[0]


def _run_piped(args: list[str], cwd: Path, timeout: float = 600) -> tuple[str, str]:
    """The command's stdout and stderr, both piped; it must succeed."""
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout, done.stderr


def _faster(text: str) -> str:
    for slow, fast in FASTER.items():
        text = text.replace(slow, fast)
    return text


def _readme_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


@pytest.mark.parametrize("example, args", [("drop_and_push.py", []), ("gym_push.py", []),
                                           ("mpc_reorient.py", ["--steps", "3"]), ("real_to_sim.py", ["--quick"])])
def test_examples_run_from_any_folder(tmp_path, example, args):
    out = _run([sys.executable, str(ROOT / "examples" / example), *args], tmp_path)
    assert out.strip()
    if example == "gym_push.py":
        assert (tmp_path / "out" / "gym_push.png").is_file()
    if example == "real_to_sim.py":
        assert "object mask IoU against the hidden truth" in out
        assert (tmp_path / "out" / "real_to_sim" / "gaussians.npz").is_file()


def test_readme_python_snippets_run_from_any_folder(tmp_path):
    blocks = _readme_blocks("python")
    assert len(blocks) == 2 and all(len(b.strip().splitlines()) <= 10 for b in blocks)
    for block in blocks:
        assert _run([sys.executable, "-c", _faster(block)], tmp_path).strip()


def test_readme_commands_run_from_any_folder(tmp_path):
    """The quickstart's plan -> virtual playback and the learning pipeline's five commands, their
    progress piped in plain lines."""
    commands = [line.split("#")[0].strip() for block in _readme_blocks("sh") for line in block.splitlines()
                if line.startswith("cgwm ")]
    assert len(commands) == 9
    said = {}
    for command in commands:
        if command.startswith(NEEDS_HARDWARE):
            continue
        said[command.split()[1]] = _run_piped([CGWM, *_faster(command).split()[1:]], tmp_path)[1]
    assert (tmp_path / "out" / "play" / "playback.json").is_file()
    assert (tmp_path / "data" / "model" / "world_model.json").is_file()
    assert not any("\r" in err for err in said.values())
    assert "leap cube (75 frames) ...\nleap cube: done, 75/75 frames in " in said["synth"]  # the last synth
    assert "stage II: initial states from the first frames (1 clips) ...\n" in said["learn"]  # LEAP clips
    assert "stage II: done, 1/1 iterations" in said["learn"]
    assert imageio.imread(tmp_path / "data" / "model" / "learning.png").ndim == 3


def test_help_does_not_import_torch_and_the_choices_match_the_library():
    code = "import sys; from cgwm_env.cli import parser; parser(); print('torch' in sys.modules)"
    assert _run([sys.executable, "-c", code], ROOT).strip() == "False"
    from cgwm_env.data.synth import SCENARIOS
    from cgwm_env.learn.settings import PARAMETERS
    from cgwm_env.physics.contact import PUSHER_MODES as LIBRARY_PUSHER_MODES

    assert SYNTH_SCENARIOS == (*SCENARIOS, "leap") and LEARNED_PARAMETERS == tuple(PARAMETERS)
    assert PUSHER_MODES == LIBRARY_PUSHER_MODES
    assert set(BENCH_SUITES) == {p.stem for p in (ROOT / "cgwm_env" / "bench").glob("*.py")} - {"__init__", "gpu_hand",
                                                                                                  "gpu_physics"}
    assert parser().parse_args(["bench", "mpc", "--trials", "2"]).trials == 2


def test_importing_cgwm_env_loads_no_torch_and_changes_nothing_process_wide():
    code = ("import os, sys; before = dict(os.environ); import cgwm_env, gymnasium; "
            "ids = sorted(i for i in gymnasium.registry if i.startswith('ContactGaussian')); "
            "print('torch' in sys.modules, 'mujoco' in sys.modules, dict(os.environ) == before, "
            "sorted(cgwm_env.ENV_IDS) == ids)")
    assert _run([sys.executable, "-c", code], ROOT).split() == ["False", "False", "True", "True"]
    code = "import cgwm_env; from cgwm_env import Model, State, step, rollout, WorldModel, Camera, render; print(Model)"
    assert "cgwm_env.physics.model.Model" in _run([sys.executable, "-c", code], ROOT)
