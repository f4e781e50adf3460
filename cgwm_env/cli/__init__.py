"""The `cgwm` command: one verb per pipeline stage. The verbs' options are defined here, with
nothing heavier than argparse, so that `cgwm --help` answers at once; the verb that runs is the
module cgwm_env.cli.<verb> (its main(args)), imported then."""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys

from cgwm_env import keep_freed_memory
from cgwm_env.config import use_threads

SYNTH_SCENARIOS = ("fall", "flatdrop", "push", "multiview", "leap")  # cgwm_env.data.synth.SCENARIOS and leap
LEARNED_PARAMETERS = ("mass", "inertia", "mu", "stiffness", "damping")  # cgwm_env.learn.settings.PARAMETERS
BENCH_SUITES = ("physics", "render", "init", "env", "hardware", "mpc", "accuracy")  # cgwm_env.cli.bench.SUITES


def parser() -> argparse.ArgumentParser:
    """The command line of every verb."""
    cgwm = argparse.ArgumentParser(prog="cgwm", description="ContactGaussian world model")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default 1, or OMP_NUM_THREADS where set: one thread does not fall "
                             "behind when another process is busy; docs/design.md)")
    verbs = cgwm.add_subparsers(dest="verb", required=True)
    add_verb = functools.partial(verbs.add_parser, parents=[common])  # every verb takes the common options

    p = add_verb("demo", help="MPC demo: the cube world model turns a cube on the LEAP Hand's palm in "
                              "MuJoCo; video and summary (--scene sim: the simulator demo)")
    p.add_argument("--scene", choices=["mpc", "sim"], default="mpc",
                   help="mpc: MPC reorientation (default); sim: a cube dropped and a cube pushed, table and plot")
    p.add_argument("--out", default="out/demo", help="folder for the video or plot and summary (default out/demo)")
    p.add_argument("--seed", type=int, default=7,
                   help="mpc: the task's seed, start and goal yaw (default 7, one the MPC benchmark solves)")
    p.add_argument("--steps", type=int, default=None, help="mpc: most control steps (default 500)")
    p.add_argument("--seconds", type=float, default=1.5, help="sim: simulated time, s")
    p.add_argument("--config", default=None,
                   help="settings YAML: mpc: MPC settings overriding MPCSettings' defaults (configs/mpc.yaml "
                        "shows every key); sim: simulator settings (configs/physics.yaml)")
    p.add_argument("--compile", action="store_true",
                   help="mpc: plan through torch.compile (about 4x faster solves; the first compiles for about a "
                        "minute)")

    p = add_verb("synth", help="record MuJoCo datasets: fall, push, multiview or leap (the LEAP Hand)")
    p.add_argument("--scenario", required=True, choices=SYNTH_SCENARIOS,
                   help="what to record (leap: LEAP Hand clips in the MuJoCo twin)")
    p.add_argument("--object", required=True, help="object name (see cgwm_env.data.objects.OBJECTS)")
    p.add_argument("--out", required=True, help="output folder (one dataset folder per episode inside)")
    p.add_argument("--episodes", type=int, default=1, help="train/test clip pairs or view sets (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--size", type=int, default=128, help="image width and height, px (default 128)")
    p.add_argument("--light", choices=("ambient", "directional"), default="ambient",
                   help="ambient (flat colours, default) or a directional light shading the faces (not for leap)")

    p = add_verb("init", help="stage I: spherical Gaussians from a multiview dataset")
    p.add_argument("--views", required=True, metavar="DIR", help="multi-view dataset folder (docs/datasets.md)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="Gaussians .npz to write; the .ply and the soft-SDF mesh .obj go beside it")
    stage1 = "(default: cgwm_env.learn.stage1.Settings')"
    p.add_argument("--geometry-iterations", type=int, default=None, help=f"geometry stage steps {stage1}")
    p.add_argument("--appearance-iterations", type=int, default=None, help=f"appearance stage steps {stage1}")
    p.add_argument("--batch", type=int, default=None, help=f"views per step {stage1}")
    p.add_argument("--grid", type=int, default=None, help=f"hull voxels along the object's longest side {stage1}")
    p.add_argument("--holdout-every", type=int, default=8, help="hold out every N-th view for the scores (0: none)")
    p.add_argument("--mesh-resolution", type=int, default=96, help="marching-cubes cells along the longest side")
    p.add_argument("--seed", type=int, default=None, help="seed of the view batches and densification (default 0)")

    p = add_verb("learn", help="stage II: physical parameters and geometry from video")
    p.add_argument("--data", required=True, metavar="DIR", help="folder of train_* clips (or one clip)")
    p.add_argument("--gaussians", required=True, metavar="FILE", help="stage I Gaussians (.npz or .ply)")
    p.add_argument("--out", required=True, metavar="MODEL", help="world-model folder to write")
    p.add_argument("--config", default=None, help="learning settings YAML, or a shipped one by name (learn.yaml, "
                                                   "learn_leap.yaml); the options below override it")
    p.add_argument("--clips", type=int, nargs="+", default=None, help="train clips to use (indices; default all)")
    stage2 = "(default: cgwm_env.learn.settings.LearnSettings')"
    p.add_argument("--iterations", type=int, default=None, help=f"Adam steps {stage2}")
    p.add_argument("--lr", type=float, default=None, help=f"Adam's step on the unconstrained theta {stage2}")
    p.add_argument("--parameters", nargs="+", default=None, choices=LEARNED_PARAMETERS, metavar="NAME",
                   help=f"which of theta to learn, some of {' '.join(LEARNED_PARAMETERS)} (default mu stiffness "
                        f"damping)")
    p.add_argument("--mass", type=float, default=None, help="initial mass, kg (default 0.1)")
    p.add_argument("--mu", type=float, default=None, help="initial friction coefficient (default 0.5)")
    p.add_argument("--stiffness", type=float, default=None, help="initial contact stiffness, 1/s^2 per unit mass (N/m with plain gains; default 2500)")
    p.add_argument("--damping", type=float, default=None, help="initial contact damping, 1/s (N s/m with plain gains; default 100)")
    p.add_argument("--lr-geometry", type=float, default=None, metavar="M",
                   help="step of the sphere centres, m: 0 (default) freezes the geometry, 2e-5 fine-tunes it")
    p.add_argument("--loftr-weights", default=None, metavar="FILE",
                   help="local kornia LoFTR weights: use the LoFTR feature loss instead of D-SSIM")
    p.add_argument("--seed", type=int, default=None, help="seed of the initial-pose candidates")

    p = add_verb("track", help="the object's pose in every frame of clips, by render-and-compare")
    p.add_argument("--data", required=True, metavar="DIR", help="a clip folder, or a folder of train_*/test_* clips")
    p.add_argument("--gaussians", required=True, metavar="FILE", help="stage I Gaussians (.npz or .ply)")
    p.add_argument("--out", default="out/track", metavar="DIR",
                   help="folder for one <clip>.npz per clip and summary.json (default out/track)")
    p.add_argument("--ground", type=float, default=None, metavar="Z",
                   help="height of the support plane the object cannot sink into, m (default 0; LEAP clips: the palm)")
    p.add_argument("--iterations", type=int, default=20, help="Adam steps per frame (default 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first frame's sampled orientations (default 0)")

    p = add_verb("eval", help="open-loop test errors beside No_opt and CEM+MuJoCo+R")
    p.add_argument("--model", required=True, metavar="MODEL", help="world-model folder (cgwm learn)")
    p.add_argument("--data", required=True, metavar="DIR", help="folder of test_* clips (and train_* for CEM)")
    p.add_argument("--out", default=None, metavar="DIR", help="where to write results (default MODEL/eval)")
    p.add_argument("--no-cem", action="store_true", help="skip the CEM+MuJoCo+R baseline")
    cem = "(default: cgwm_env.learn.evaluate.CemSettings')"
    p.add_argument("--cem-iterations", type=int, default=None, help=f"CEM iterations {cem}")
    p.add_argument("--cem-samples", type=int, default=None, help=f"parameter samples per iteration {cem}")
    p.add_argument("--no-videos", action="store_true", help="do not write the side-by-side GIFs")
    p.add_argument("--seed", type=int, default=0, help="CEM's seed")
    p.add_argument("--mjcf", default=None, metavar="FILE",
                   help="the object for CEM+MuJoCo+R: an MJCF .xml with it as a free body, or a mesh .obj/.stl "
                        "(default: the library object the clips name, else stage I's mesh)")

    p = add_verb("plan", help="an MPC plan turning the object, made on a world model; a trajectory for play")
    p.add_argument("--model", default=None, help="world-model bundle to plan on (default: the bundled cube)")
    p.add_argument("--steps", type=int, default=300, help="control steps to plan, 1/30 s each (default 300)")
    p.add_argument("--turn", type=float, default=90.0, help="turn about +z, degrees (default 90)")
    p.add_argument("--config", default=None, help="MPC settings YAML overriding MPCSettings' defaults")
    p.add_argument("--out", default="out/plan.npz", help="trajectory file to write, for cgwm play")

    p = add_verb("calibrate", help="camera pose from ArUco markers; writes a camera JSON")
    p.add_argument("--config", default=None,
                   help="hardware settings YAML with the calibration markers and camera size (default: the "
                        "packaged configs/hardware.yaml)")
    p.add_argument("--image", default=None,
                   help="an RGB image of the markers (PNG, JPEG); default: one frame from the RealSense")
    p.add_argument("--intrinsics", default=None,
                   help="camera JSON giving the image's width, height, fx, fy, cx, cy (needed with --image)")
    p.add_argument("--out", default="out/camera.json", help="camera JSON to write (default out/camera.json)")

    p = add_verb("play", help="open-loop playback of a joint trajectory on the LEAP Hand")
    p.add_argument("trajectory", help=".npz with times (T,) s and joint_targets (T, 16) rad in sim order")
    p.add_argument("--virtual", action="store_true",
                   help="no robot: a virtual bus backed by MuJoCo's LEAP hand and a software RealSense rendering "
                        "the scene's palm_cam")
    p.add_argument("--config", default=None, help="hardware settings YAML (see configs/hardware.yaml)")
    p.add_argument("--camera", default=None, help="camera JSON from `cgwm calibrate` (needed to record on the "
                                                   "real hand)")
    p.add_argument("--no-camera", action="store_true", help="play without recording frames")
    p.add_argument("--port", default=None, help="serial port of the hand (overrides the config)")
    p.add_argument("--out", default="out/play", help="folder for playback.json and the recorded dataset")
    p.add_argument("--object", default="unknown",
                   help="object name written to the dataset's meta.json; with --virtual, a library object "
                        "(cgwm_env.data.objects) is put on the virtual palm (else the scene's red cube)")
    p.add_argument("--model", default=None,
                   help="WorldModel bundle whose predicted frames the recording is compared with (PSNR per "
                        "frame; default the bundled cube model)")

    p = add_verb("bench", help="speed and accuracy benchmarks; print a table and write JSON")
    p.add_argument("suite", choices=BENCH_SUITES)
    p.add_argument("--out", default=None, help="JSON file to write")
    p.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run, noisier figures)")
    p.add_argument("--trials", type=int, default=None, help="mpc: episodes per object (default 20, quick 3)")
    p.add_argument("--compile", action="store_true",
                   help="mpc: plan through torch.compile (the first solve, which compiles, is reported apart)")
    p.add_argument("--workers", type=int, default=1,
                   help="mpc: processes running episodes at once (default 1; one per free core)")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="mpc: run the --workers as Ray actors on the cluster at ADDRESS ('local': start one here); "
                        "needs the [ray] extra")
    p.add_argument("--objects", nargs="+", default=None, metavar="NAME",
                   help="accuracy: library objects (default cube duck lblock bottle mug; quick: cube); "
                        "mpc: objects or world-model bundles (e.g. cube_handmade; default all)")
    p.add_argument("--config", default=None, help="mpc: MPC settings YAML overriding MPCSettings' defaults")
    return cgwm


def main(argv: list[str] | None = None) -> int:
    """Run `cgwm` with argv (default sys.argv[1:]); returns the exit status (2: bad input)."""
    args = parser().parse_args(argv)
    # The command draws offscreen: MuJoCo picks its OpenGL backend when first imported (EGL, no
    # display needed, unless MUJOCO_GL says otherwise).
    os.environ.setdefault("MUJOCO_GL", "egl")
    keep_freed_memory()
    verb = importlib.import_module(f"cgwm_env.cli.{args.verb}")
    try:
        use_threads(args.threads, "--threads")
        verb.main(args)
    except ValueError as err:  # bad input: say what is wrong, without a traceback
        print(f"cgwm {args.verb}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
