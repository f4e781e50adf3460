"""The `cgwm` command: one verb per pipeline stage. The verbs' options are defined here, with
nothing heavier than argparse, so that `cgwm --help` answers at once; the verb that runs is the
module cgwm_env.cli.<verb> (its main(args)), imported then.

One grammar (docs/cli.md): a dataset folder is `--data`, a world-model bundle `--model`, an
object `--object`; `--out` is always a folder the verb writes into; a verb whose product is one
file names the flag for that file, the same flag the verb that reads it takes (`init
--gaussians` -> `learn --gaussians`, `plan --trajectory` -> `play --trajectory`, `calibrate
--camera` -> `play --camera`, `bench --json`). Paths are relative to the current folder. Inputs
are checked to exist and outputs to be writable before any work. Exit status: 0 done, 2 bad
input (a message naming the flag), 3 hardware failure.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
import tempfile
from pathlib import Path

from cgwm_env import keep_freed_memory, progress
from cgwm_env.config import use_threads

SYNTH_SCENARIOS = ("fall", "flatdrop", "push", "multiview", "leap")  # cgwm_env.data.synth.SCENARIOS and leap
LEARNED_PARAMETERS = ("mass", "inertia", "mu", "stiffness", "damping")  # cgwm_env.learn.settings.PARAMETERS
PUSHER_MODES = ("mocap", "driven")  # cgwm_env.physics.contact.PUSHER_MODES
BENCH_SUITES = ("physics", "render", "init", "env", "hardware", "mpc", "accuracy")  # cgwm_env.cli.bench.SUITES
# Names the library's messages use for what a verb's flag sets, where they differ from the flag's.
LIBRARY_NAMES = {"init": {"views_dir": "--data", "out_file": "--gaussians"},
                 "learn": {"gaussians_file": "--gaussians"},
                 "eval": {"samples": "--cem-samples", "iterations": "--cem-iterations"}, "plan": {"path": "--model"},
                 "capture": {"images": "--session"}}


def _fail(text: str):
    raise argparse.ArgumentTypeError(text)


def count(least: int):
    """An argparse type: an integer >= least."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            _fail(f"expected an integer >= {least}, got {text!r}")
        if value < least:
            _fail(f"expected an integer >= {least}, got {value}")
        return value
    parse.__name__ = f"integer >= {least}"
    return parse


def number(low: float = -math.inf, open_low: bool = False):
    """An argparse type: a finite number >= low (> low when open_low)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < low or (open_low and value == low):
            bound = "" if low == -math.inf else f" {'>' if open_low else '>='} {low:g}"
            _fail(f"expected a finite number{bound}, got {text!r}")
        return value
    parse.__name__ = "number"
    return parse


def existing_dir(text: str) -> str:
    """An argparse type: an existing folder."""
    if not Path(text).is_dir():
        _fail(f"expected an existing folder, got {text!r} ({'a file' if Path(text).exists() else 'no such folder'})")
    return text


def existing_file(text: str) -> str:
    """An argparse type: an existing file."""
    if not Path(text).is_file():
        _fail(f"expected an existing file, got {text!r} ({'a folder' if Path(text).exists() else 'no such file'})")
    return text


def _check_writable(path: Path) -> None:
    """Whether a file or folder can be made at `path`: its nearest existing ancestor is a folder
    where a file can be created (probed with a temporary file)."""
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        _fail(f"cannot write {str(path)!r}: {str(parent)!r} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as err:
        _fail(f"cannot write {str(path)!r}: {str(parent)!r} is not writable ({err.strerror})")


def out_dir(text: str) -> str:
    """An argparse type: a folder to write into (made if missing): not a file, writable."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        _fail(f"expected a folder to write into, got the file {text!r}")
    _check_writable(path / "probe")
    return text


def out_file(suffix: str):
    """An argparse type: a file name ending in `suffix` to write (its folder made if missing)."""
    def parse(text: str) -> str:
        path = Path(text)
        if path.suffix != suffix:
            _fail(f"expected a {suffix} file name, got {text!r}")
        if path.is_dir():
            _fail(f"expected a {suffix} file name, got the folder {text!r}")
        _check_writable(path)
        return text
    parse.__name__ = f"{suffix} file"
    return parse


def parser() -> argparse.ArgumentParser:
    """The command line of every verb."""
    common = argparse.ArgumentParser(add_help=False)  # on the command and on every verb
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bars or step lines; the closing summary and errors only")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="more detail (settings, timings of each step)")
    common.add_argument("--threads", type=count(1), default=argparse.SUPPRESS,
                        help="torch CPU threads (default 1, or OMP_NUM_THREADS where set: one thread does not fall "
                             "behind when another process is busy; docs/design.md)")
    cgwm = argparse.ArgumentParser(prog="cgwm", parents=[common],
                                   description="ContactGaussian world model: learn a physics-grounded world model "
                                               "from video and plan LEAP Hand motions with it (docs/cli.md).",
                                   epilog="Exit status: 0 done, 2 bad input, 3 hardware failure.")
    cgwm.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    verbs = cgwm.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, text: str) -> argparse.ArgumentParser:
        return verbs.add_parser(name, parents=[common], help=text, description=text)

    p = verb("demo", "MPC demo: the cube world model turns a cube on the LEAP Hand's palm in MuJoCo; video and "
                     "summary (--scene sim: the simulator demo)")
    p.add_argument("--scene", choices=["mpc", "sim"], default="mpc",
                   help="mpc: MPC reorientation; sim: a cube dropped and a cube pushed, table and plot (default mpc)")
    p.add_argument("--out", type=out_dir, default="out/demo", metavar="DIR",
                   help="folder for the video (MP4 and GIF) or plot and the summary JSON (default out/demo)")
    p.add_argument("--seed", type=count(0), default=None,
                   help="mpc: the task's seed, start and goal yaw (default 7, one the MPC benchmark solves)")
    p.add_argument("--steps", type=count(1), default=None, help="mpc: most control steps, 1/30 s each (default 500)")
    p.add_argument("--seconds", type=number(0.0, open_low=True), default=None,
                   help="sim: simulated time, s (default 1.5)")
    p.add_argument("--config", type=existing_file, default=None, metavar="YAML",
                   help="settings YAML: mpc: MPC settings overriding MPCSettings' defaults (configs/mpc.yaml shows "
                        "every key); sim: simulator settings (configs/physics.yaml) (default: none, the defaults)")
    p.add_argument("--compile", action="store_true",
                   help="mpc: plan through torch.compile (about 4x faster solves; the first compiles for about a "
                        "minute) (default off)")

    p = verb("synth", "record MuJoCo datasets: fall, push, multiview or leap (the LEAP Hand)")
    p.add_argument("--scenario", required=True, choices=SYNTH_SCENARIOS,
                   help="what to record (leap: LEAP Hand clips in the MuJoCo twin); required")
    p.add_argument("--object", required=True, help="library object name (cgwm_env.data.objects.OBJECTS); required")
    p.add_argument("--out", type=out_dir, required=True, metavar="DIR",
                   help="folder to write into, one dataset folder per clip or view set; required")
    p.add_argument("--episodes", type=count(1), default=1,
                   help="train/test clip pairs, or view sets (default 1)")
    p.add_argument("--seed", type=count(0), default=0, help="random seed (default 0)")
    p.add_argument("--size", type=count(16), default=128, help="image width and height, px, 16-2048 (default 128)")
    p.add_argument("--light", choices=("ambient", "directional"), default="ambient",
                   help="ambient: flat colours; directional: a light shading the faces (not for leap) (default ambient)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the datasets already in --out (default: refuse to write over them)")

    p = verb("init", "stage I: spherical Gaussians from a multi-view dataset")
    p.add_argument("--data", "--views", dest="data", type=existing_dir, required=True, metavar="DIR",
                   help="multi-view dataset folder (docs/datasets.md; --views is its old name); required")
    p.add_argument("--gaussians", type=out_file(".npz"), required=True, metavar="FILE.npz",
                   help="Gaussians to write (what learn --gaussians reads); the .ply and the soft-SDF mesh .obj go "
                        "beside it; required")
    p.add_argument("--geometry-iterations", type=count(0), default=None, help="geometry stage steps (default 300)")
    p.add_argument("--appearance-iterations", type=count(0), default=None,
                   help="appearance stage steps (default 300)")
    p.add_argument("--batch", type=count(1), default=None, help="views per step (default 4)")
    p.add_argument("--grid", type=count(2), default=None,
                   help="hull voxels along the object's longest side (default 60)")
    p.add_argument("--holdout-every", type=count(0), default=8,
                   help="hold out every N-th view for the scores, 0: none (default 8)")
    p.add_argument("--mesh-resolution", type=count(2), default=96,
                   help="marching-cubes cells along the longest side (default 96)")
    p.add_argument("--seed", type=count(0), default=None, help="seed of the view batches and densification (default 0)")

    p = verb("learn", "stage II: physical parameters and geometry from video")
    p.add_argument("--data", type=existing_dir, required=True, metavar="DIR",
                   help="folder of train_* clips (or one clip); required")
    p.add_argument("--gaussians", type=existing_file, required=True, metavar="FILE",
                   help="stage I Gaussians, .npz or .ply (init --gaussians); required")
    p.add_argument("--out", type=out_dir, required=True, metavar="DIR",
                   help="world-model folder to write (the bundle, learn_log.jsonl and learning.png, its plot); required")
    p.add_argument("--config", default=None, metavar="YAML",
                   help="learning settings YAML, or a shipped one by name (learn.yaml, learn_leap.yaml); the options "
                        "below override it (default: none, LearnSettings' defaults)")
    p.add_argument("--clips", type=count(0), nargs="+", default=None, metavar="INDEX",
                   help="train clips to use, indices (default all)")
    p.add_argument("--iterations", type=count(0), default=None, help="image-space Adam steps; for a free object, the refinement after identification (default 10)")
    p.add_argument("--lr", type=number(0.0, open_low=True), default=None,
                   help="Adam's step on the unconstrained theta (default 0.04)")
    p.add_argument("--parameters", nargs="+", default=None, choices=LEARNED_PARAMETERS, metavar="NAME",
                   help=f"which of theta to learn, some of {' '.join(LEARNED_PARAMETERS)} (default mu stiffness "
                        f"damping)")
    p.add_argument("--mass", type=number(0.0, open_low=True), default=None, help="initial mass, kg (default 0.1)")
    p.add_argument("--mu", type=number(0.0), default=None,
                   help="initial friction coefficient (default 0.5; LEAP Hand clips 0.2)")
    p.add_argument("--stiffness", type=number(0.0, open_low=True), default=None,
                   help="initial contact stiffness: 1/s^2 with effective-mass gains (free objects), N/m with plain "
                        "gains (LEAP Hand clips) (default 2500 1/s^2, MuJoCo's default solref; LEAP Hand clips 40 N/m)")
    p.add_argument("--damping", type=number(0.0, open_low=True), default=None,
                   help="initial contact damping: 1/s with effective-mass gains, N s/m with plain gains (default "
                        "100 1/s; LEAP Hand clips 1 N s/m)")
    p.add_argument("--lr-geometry", type=number(0.0), default=None, metavar="M",
                   help="step of the sphere centres, m: 0 freezes the geometry, 2e-5 fine-tunes it (default 0)")
    p.add_argument("--loftr-weights", type=existing_file, default=None, metavar="FILE",
                   help="local kornia LoFTR weights: use the LoFTR feature loss instead of D-SSIM (default: D-SSIM)")
    p.add_argument("--seed", type=count(0), default=None, help="seed of the initial-pose candidates (default 0)")
    p.add_argument("--pusher", choices=PUSHER_MODES, default=None,
                   help="how the clips' pusher moved: mocap, placed along its path as MuJoCo's mocap bodies (cgwm synth, "
                        "most MuJoCo scenes); driven, a stiffly driven robot finger (docs/simulator.md) (default mocap)")

    p = verb("track", "the object's pose in every frame of clips, by render-and-compare")
    p.add_argument("--data", type=existing_dir, required=True, metavar="DIR",
                   help="a clip folder, or a folder of train_*/test_* clips; required")
    p.add_argument("--gaussians", type=existing_file, required=True, metavar="FILE",
                   help="stage I Gaussians, .npz or .ply (init --gaussians); required")
    p.add_argument("--out", type=out_dir, default="out/track", metavar="DIR",
                   help="folder for one <clip>.npz per clip and summary.json (default out/track)")
    p.add_argument("--ground", type=number(), default=None, metavar="Z",
                   help="height of the support plane the object cannot sink into, m (default 0; LEAP clips: none)")
    p.add_argument("--iterations", type=count(0), default=20, help="Adam steps per frame (default 20)")
    p.add_argument("--seed", type=count(0), default=0, help="seed of the first frame's sampled orientations (default 0)")

    p = verb("learn-leap", "a LEAP Hand world model of a library object, learned from its MuJoCo twin with the same "
                           "settings for every object")
    p.add_argument("--object", required=True, help="library object (cgwm_env.data.objects.OBJECTS); required")
    p.add_argument("--out", type=out_dir, required=True, metavar="DIR",
                   help="folder for the views, Gaussians and clips; DIR/model is the world-model bundle (a step "
                        "whose output is there already is not run again); required")

    p = verb("eval", "open-loop test errors beside No_opt and CEM+MuJoCo+R")
    p.add_argument("--model", type=existing_dir, required=True, metavar="DIR",
                   help="world-model folder (learn --out); required")
    p.add_argument("--data", type=existing_dir, required=True, metavar="DIR",
                   help="folder of test_* clips (and train_* for CEM); required")
    p.add_argument("--out", type=out_dir, default=None, metavar="DIR",
                   help="folder to write the results into (default MODEL/eval)")
    p.add_argument("--no-cem", action="store_true", help="skip the CEM+MuJoCo+R baseline (default: run it)")
    p.add_argument("--cem-iterations", type=count(1), default=None, help="CEM iterations (default 8)")
    p.add_argument("--cem-samples", type=count(1), default=None,
                   help="parameter samples per iteration; a tenth are the elites (default 100)")
    p.add_argument("--no-videos", action="store_true", help="do not write the side-by-side GIFs (default: write them)")
    p.add_argument("--seed", type=count(0), default=0, help="CEM's seed (default 0)")
    p.add_argument("--mjcf", type=existing_file, default=None, metavar="FILE",
                   help="the object for CEM+MuJoCo+R: an MJCF .xml with it as a free body, or a mesh .obj/.stl "
                        "(default: the library object the clips name, else stage I's mesh)")

    p = verb("plan", "an MPC plan turning the object, made on a world model; a trajectory for play")
    p.add_argument("--model", type=existing_dir, default=None, metavar="DIR",
                   help="world-model bundle to plan on (default: the bundled cube)")
    p.add_argument("--steps", type=count(1), default=300, help="control steps to plan, 1/30 s each (default 300)")
    p.add_argument("--turn", type=number(), default=90.0, help="turn about +z, degrees (default 90)")
    p.add_argument("--config", type=existing_file, default=None, metavar="YAML",
                   help="MPC settings YAML overriding MPCSettings' defaults (default: none)")
    p.add_argument("--trajectory", type=out_file(".npz"), default="out/plan.npz", metavar="FILE.npz",
                   help="trajectory to write, what play --trajectory reads (default out/plan.npz)")

    p = verb("calibrate", "camera pose from ArUco markers; writes a camera JSON")
    p.add_argument("--config", type=existing_file, default=None, metavar="YAML",
                   help="hardware settings YAML with the calibration markers and camera size (default: the "
                        "packaged configs/hardware.yaml)")
    p.add_argument("--image", type=existing_file, default=None, metavar="FILE",
                   help="an RGB image of the markers, PNG or JPEG (default: one frame from the RealSense)")
    p.add_argument("--intrinsics", type=existing_file, default=None, metavar="FILE.json",
                   help="camera JSON giving the image's width, height, fx, fy, cx, cy; needed with --image (default: none)")
    p.add_argument("--camera", type=out_file(".json"), default="out/camera.json", metavar="FILE.json",
                   help="camera JSON to write, what play --camera reads (default out/camera.json)")

    p = verb("play", "open-loop playback of a joint trajectory on the LEAP Hand, recorded and compared with the "
                     "world model's frames")
    p.add_argument("--trajectory", type=existing_file, required=True, metavar="FILE.npz",
                   help=".npz with times (T,) s and joint_targets (T, 16) rad in sim order (plan --trajectory); "
                        "required")
    p.add_argument("--virtual", action="store_true",
                   help="no robot: a virtual bus backed by MuJoCo's LEAP hand and a software RealSense rendering "
                        "the scene's palm_cam (default: the real hand)")
    p.add_argument("--config", type=existing_file, default=None, metavar="YAML",
                   help="hardware settings YAML (default: the packaged configs/hardware.yaml)")
    p.add_argument("--camera", type=existing_file, default=None, metavar="FILE.json",
                   help="real hand: camera JSON from calibrate --camera, needed to record (default: none)")
    p.add_argument("--no-camera", action="store_true", help="play without recording frames (default: record)")
    p.add_argument("--background", action="store_true",
                   help="before playing, record the empty scene for segment (background.png, its depth, the "
                        "hand's joints): with --virtual the object is hidden; on the real hand you are asked to "
                        "take it off and put it back (default off)")
    p.add_argument("--port", default=None, help="real hand: serial port (default: the config's)")
    p.add_argument("--out", type=out_dir, default="out/play", metavar="DIR",
                   help="folder for playback.json and the recorded dataset (default out/play)")
    p.add_argument("--object", default=None,
                   help="object name written to the dataset's meta.json; with --virtual, a library object "
                        "(cgwm_env.data.objects) put on the virtual palm (default: unknown, and with --virtual "
                        "the scene's red cube)")
    p.add_argument("--model", type=existing_dir, default=None, metavar="DIR",
                   help="world-model bundle whose predicted frames the recording is compared with, PSNR per "
                        "frame (default: the bundled cube)")

    p = verb("capture", "capture views: a multi-view set of a real object with camera poses from a ChArUco "
                        "board, for init")
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    text = "a multi-view set from a session folder of photos of the object on a ChArUco board"
    p = kinds.add_parser("views", parents=[common], help=text, description=text)
    p.add_argument("--session", type=existing_dir, required=True, metavar="DIR",
                   help="folder with images/ (PNG or JPEG, sorted by name), intrinsics.json (width, height, fx, fy, "
                        "cx, cy; pixel centres at +0.5) and optionally depth.npz (one map per image); required")
    p.add_argument("--out", type=out_dir, default="out/views", metavar="DIR",
                   help="multi-view set folder to write, what init --data reads (default out/views)")
    p.add_argument("--size", type=count(16), default=128, help="side of each cropped view, px (default 128)")
    p.add_argument("--object", default="object", help="object name written to meta.json (default object)")
    p.add_argument("--squares", type=count(3), nargs=2, default=(8, 6), metavar=("COLUMNS", "ROWS"),
                   help="the ChArUco board's squares (default 8 6)")
    p.add_argument("--square", type=number(0.0, open_low=True), default=0.03,
                   help="side of a board square as printed, m (default 0.03)")
    p.add_argument("--marker", type=number(0.0, open_low=True), default=0.022,
                   help="side of a marker as printed, m, less than --square (default 0.022)")
    p.add_argument("--dictionary", default="DICT_4X4_50", help="the board's cv2.aruco dictionary (default DICT_4X4_50)")

    p = verb("segment", "object and hand masks of recorded clips, from background.png, depth and the hand's joints")
    p.add_argument("--data", type=existing_dir, nargs="+", required=True, metavar="DIR",
                   help="dataset folders with background.png (play --background records it); their masks/, "
                        "hand_masks/ and meta.json are rewritten; required")
    p.add_argument("--min-confidence", type=number(0.0), default=0.8,
                   help="frames whose confidence (IoU of GrabCut's mask with the colour/depth cues'), in [0, 1], is "
                        "below this are named unsure (default 0.8)")
    p.add_argument("--no-refine-camera", action="store_true",
                   help="keep the calibrated camera as it is (default: shift the hand's drawn silhouette to meet "
                        "the images, mending a small calibration error)")

    p = verb("bench", "speed and accuracy benchmarks, one subcommand per suite; print a table and write JSON")
    suites = p.add_subparsers(dest="suite", required=True, metavar="SUITE")

    def suite(name: str, text: str) -> argparse.ArgumentParser:
        s = suites.add_parser(name, parents=[common], help=text, description=text)
        s.add_argument("--json", "--out", dest="out", type=out_file(".json"), default=f"out/bench_{name}.json",
                       metavar="FILE.json",
                       help=f"results to write (--out is its old name) (default out/bench_{name}.json)")
        s.add_argument("--quick", action="store_true", help="fewer repeats: a smoke run, noisier figures (default off)")
        return s

    suite("physics", "simulator steps per second against MuJoCo")
    suite("render", "Gaussian renderer frames per second")
    suite("init", "stage I: time and held-out PSNR on a MuJoCo view set")
    suite("env", "control steps per second of the LEAP Hand environments")
    suite("hardware", "the virtual LEAP Hand: playback jitter and PSNR against the world models")
    s = suite("mpc", "the MPC's on-palm reorientation in the MuJoCo twin, per world model")
    s.add_argument("--trials", type=count(1), default=None, help="episodes per world model (default 20, quick 3)")
    s.add_argument("--compile", action="store_true",
                   help="plan through torch.compile; the first solve, which compiles, is reported apart (default off)")
    s.add_argument("--workers", type=count(1), default=1,
                   help="processes running episodes at once, one per free core (default 1)")
    s.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run the --workers as Ray actors on the cluster at ADDRESS ('local': start one here); needs "
                        "the [ray] extra (default: local processes)")
    s.add_argument("--object", "--objects", dest="objects", nargs="+", default=None, metavar="NAME",
                   help="library objects, bundled world models (e.g. cube_handmade) or world-model folders (e.g. "
                        "DIR/model of learn-leap) (default: every bundled one)")
    s.add_argument("--config", type=existing_file, default=None, metavar="YAML",
                   help="MPC settings YAML overriding MPCSettings' defaults (default: none)")
    s = suite("accuracy", "stage II against No_opt and CEM+MuJoCo+R on MuJoCo clips")
    s.add_argument("--object", "--objects", dest="objects", nargs="+", default=None, metavar="NAME",
                   help="library objects (default cube duck lblock bottle mug; quick: cube)")
    return cgwm


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cgwm")
    except PackageNotFoundError:
        return "(not installed)"


def _subparser(p: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    return next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices[name]


def _flag_message(err: ValueError, verb: str, verb_parser: argparse.ArgumentParser) -> str:
    """The error's text with a leading library argument name replaced by the flag the user typed."""
    text = str(err)
    name, colon, rest = text.partition(":")
    if not colon or " " in name:
        return text
    flags = {a.dest: a.option_strings[0] for a in verb_parser._actions if a.option_strings}
    flags.update(LIBRARY_NAMES.get(verb, {}))
    return f"{flags[name]}:{rest}" if name in flags else text


def main(argv: list[str] | None = None) -> int:
    """Run `cgwm` with argv (default sys.argv[1:]); returns the exit status (2: bad input, 3: hardware)."""
    cli = parser()
    try:
        args = cli.parse_args(argv)
    except SystemExit as done:  # --help, --version (0) or a flag argparse refused (2, its message printed)
        return done.code
    quiet, verbose = getattr(args, "quiet", False), getattr(args, "verbose", False)
    progress.set_level(progress.QUIET if quiet else progress.VERBOSE if verbose else progress.NORMAL)
    # The command draws offscreen: MuJoCo picks its OpenGL backend when first imported (EGL, no
    # display needed, unless MUJOCO_GL says otherwise).
    os.environ.setdefault("MUJOCO_GL", "egl")
    keep_freed_memory()
    verb = importlib.import_module(f"cgwm_env.cli.{args.verb.replace('-', '_')}")
    try:
        use_threads(getattr(args, "threads", None), "--threads")
        verb.main(args)
    except ValueError as err:  # bad input: say what is wrong, without a traceback
        verb_parser = _subparser(cli, args.verb)
        for sub in ("suite", "kind"):  # bench SUITE, capture KIND
            if hasattr(args, sub):
                verb_parser = _subparser(verb_parser, getattr(args, sub))
        print(f"cgwm {args.verb}: error: {_flag_message(err, args.verb, verb_parser)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
