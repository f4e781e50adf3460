"""The command line's grammar and its refusals: one row per class of bad input, each a clear
message naming the flag as typed (exit 2), no traceback, nothing written; help that states every
default; progress that stays readable when piped."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cgwm_env.cli import main, parser
from cgwm_env.learn.world_model import WorldModel

CGWM = str(Path(sys.executable).parent / "cgwm")
BUNDLE = Path(__file__).resolve().parents[1] / "cgwm_env" / "assets" / "world_models" / "cube"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """Inputs for the rows: a plain file, a truncated .npz, a bundle whose Gaussians are truncated,
    a good trajectory, a camera JSON, and a folder holding a dataset."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "file.txt").write_text("not a folder")
    good = root / "plan.npz"
    np.savez(good, times=np.arange(4) / 30.0, joint_targets=np.zeros((4, 16)))
    (root / "truncated.npz").write_bytes(good.read_bytes()[:100])
    bundle = root / "bundle"
    WorldModel.load(BUNDLE).save(bundle)
    (bundle / "gaussians.npz").write_bytes((bundle / "gaussians.npz").read_bytes()[:300])
    (root / "camera.json").write_text(json.dumps({"width": 64, "height": 48, "fx": 50.0, "fy": 50.0, "cx": 32.0,
                                                  "cy": 24.0, "T_cw": np.eye(4).tolist()}))
    (root / "data" / "train_000").mkdir(parents=True)
    (root / "data" / "train_000" / "meta.json").write_text("{}")
    return {k: str(v) for k, v in dict(root=root, file=root / "file.txt", npz=good, truncated=root / "truncated.npz",
                                       bundle=bundle, camera=root / "camera.json", data=root / "data").items()}


# (what, argv with {placeholders}, the flag the message must name). Every row must exit 2.
ROWS = [
    # a file that is not what it should be: truncated .npz, missing file or folder
    ("truncated trajectory", "play --trajectory {truncated} --virtual --no-camera --out {out}", "--trajectory"),
    ("truncated bundle", "plan --model {bundle} --steps 2 --trajectory {out}/p.npz", "gaussians.npz"),
    ("truncated Gaussians", "learn --data {data} --gaussians {truncated} --out {out}", "truncated.npz"),
    ("missing trajectory", "play --trajectory {root}/nosuch.npz --virtual --no-camera", "--trajectory"),
    ("missing dataset", "init --data {root}/nosuch --gaussians {out}/g.npz", "--data"),
    ("old flag name", "init --views {root}/nosuch --gaussians {out}/g.npz", "--data/--views"),
    ("missing config", "demo --config {root}/nosuch.yaml --out {out}", "--config"),
    ("file for a folder", "learn --data {file} --gaussians {npz} --out {out}", "--data"),
    ("folder without meta.json", "init --data {data} --gaussians {out}/g.npz", "--data: expected a multi-view dataset"),
    ("missing model", "eval --model {root}/nosuch --data {data}", "--model"),
    # an output that cannot be written: checked before any work
    ("--out under a file", "demo --out {file}/demo", "--out"),
    ("--out is a file", "synth --scenario fall --object cube --out {file}", "--out"),
    ("trajectory under a file", "plan --trajectory {file}/plan.npz", "--trajectory"),
    ("Gaussians under a file", "init --data {data} --gaussians {file}/g.npz", "--gaussians"),
    ("learn's --out under a file", "learn --data {data} --gaussians {npz} --out {file}/model", "--out"),
    ("camera under a file", "calibrate --camera {file}/camera.json", "--camera"),
    ("bench JSON under a file", "bench physics --json {file}/b.json", "--json/--out"),
    # a file of the wrong kind
    ("trajectory not .npz", "plan --trajectory {out}/x.txt", "--trajectory"),
    ("camera not .json", "calibrate --camera {out}/camera.yaml", "--camera"),
    # numbers out of range or not numbers
    ("negative seconds", "demo --scene sim --seconds -1 --out {out}", "--seconds"),
    ("NaN turn", "plan --turn nan --trajectory {out}/p.npz", "--turn"),
    ("zero steps", "plan --steps 0 --trajectory {out}/p.npz", "--steps"),
    ("zero episodes", "synth --scenario fall --object cube --episodes 0 --out {out}", "--episodes"),
    ("image too large", "synth --scenario fall --object cube --size 5000 --out {out}", "--size"),
    ("fraction of a count", "bench mpc --trials 2.5", "--trials"),
    ("no workers", "bench mpc --workers 0", "--workers"),
    ("negative seed", "demo --seed -3 --out {out}", "--seed"),
    # names that are not there
    ("unknown object", "synth --scenario fall --object nosuch --out {out}", "--object"),
    ("unknown virtual object", "play --trajectory {npz} --virtual --no-camera --object nosuch --out {out}", "--object"),
    ("unknown bench object", "bench mpc --object nosuch --trials 1", "--object"),
    ("unknown scenario", "synth --scenario drop --object cube --out {out}", "--scenario"),
    # flags the chosen mode would ignore
    ("camera with --virtual", "play --trajectory {npz} --virtual --camera {camera} --out {out}", "--camera"),
    ("port with --virtual", "play --trajectory {npz} --virtual --port /dev/ttyUSB0 --out {out}", "--port"),
    ("model with --no-camera", "play --trajectory {npz} --virtual --no-camera --model {bundle} --out {out}", "--model"),
    ("background with --no-camera", "play --trajectory {npz} --virtual --no-camera --background --out {out}",
     "--background"),
    ("missing capture session", "capture views --session {root}/nosuch --out {out}", "--session"),
    ("segment a folder that is no dataset", "segment --data {root}", "--data"),
    ("confidence above 1", "segment --data {data}/train_000 --min-confidence 2", "--min-confidence"),
    ("steps with the sim scene", "demo --scene sim --steps 5 --out {out}", "--steps"),
    ("seconds with the MPC scene", "demo --seconds 2 --out {out}", "--seconds"),
    ("a suite's flag on another suite", "bench physics --trials 3", "--trials"),
    ("a suite's flag on another suite", "bench render --compile", "--compile"),
    # writing over what is there
    ("synth over a dataset", "synth --scenario fall --object cube --out {data}", "--overwrite"),
    ("synth into a dataset", "synth --scenario fall --object cube --out {data}/train_000", "--out"),
]


@pytest.mark.parametrize("what, argv, flag", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_is_refused_naming_the_flag(what, argv, flag, files, tmp_path, capsys):
    out = tmp_path / "out"
    args = argv.format(out=out, **files).split()
    assert main(args) == 2, what
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # argparse's usage may come before it
    assert last.startswith("cgwm") and ": error: " in last and flag in last and "Traceback" not in err, err
    assert not out.exists()  # nothing was written
    assert (Path(files["data"]) / "train_000" / "meta.json").read_text() == "{}"  # nor overwritten


def test_init_names_the_datasets_inside_a_folder_without_meta_json(files, tmp_path, capsys):
    assert main(["init", "--data", files["data"], "--gaussians", str(tmp_path / "g.npz")]) == 2
    err = capsys.readouterr().err
    assert "--data: expected a multi-view dataset folder with meta.json" in err and "train_000" in err


def test_synth_overwrite_replaces_only_the_datasets(tmp_path, capsys, monkeypatch):
    """... and, piped, says what it records in plain lines, leaving the process's environment alone."""
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    out = tmp_path / "set"
    (out / "train_000" / "frames").mkdir(parents=True)
    (out / "train_000" / "meta.json").write_text("{}")
    (out / "train_000" / "frames" / "stale_9999.png").write_bytes(b"stale")
    (out / "notes.txt").write_text("mine")
    assert main(["synth", "--scenario", "fall", "--object", "cube", "--out", str(out), "--size", "16",
                 "--overwrite"]) == 0
    assert not (out / "train_000" / "frames" / "stale_9999.png").exists()  # no stale frames left behind
    assert (out / "notes.txt").read_text() == "mine" and (out / "test_000" / "meta.json").is_file()
    printed = capsys.readouterr()
    assert "synth: 2 dataset(s)" in printed.out and "TQDM_DISABLE" not in os.environ
    assert "fall cube (75 frames) ...\nfall cube: done, 75/75 frames in " in printed.err and "\r" not in printed.err


def test_demo_takes_a_single_step(tmp_path, capsys):
    """`cgwm demo --steps 1` (once "need at least one array to stack"): the start and the step drawn."""
    assert main(["demo", "--steps", "1", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "mpc_demo.json").read_text())
    assert summary["steps"] == 1 and (tmp_path / "mpc_demo.mp4").stat().st_size > 0
    assert summary["frame_px"][0] >= 320 and summary["frame_px"][1] >= 640  # 2x the old 160 x 320
    assert "demo: no success after 1 steps" in capsys.readouterr().out


def _options():
    """(verb, action) of every option of every verb and bench suite."""
    def walk(p: argparse.ArgumentParser, name: str):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, subparser in action.choices.items():
                    yield from walk(subparser, f"{name} {sub}".strip())
            elif action.option_strings and action.dest not in ("help", "version", "quiet", "verbose"):
                yield name, action
    return list(walk(parser(), ""))


def test_every_option_states_its_default_and_the_grammar_holds():
    options = _options()
    assert len(options) > 60
    for verb, action in options:
        text = action.help or ""
        assert "default" in text or "required" in text, f"cgwm {verb} {action.option_strings[0]}: {text}"
        flag = action.option_strings[0]
        if flag == "--out":  # --out is always a folder, except bench's old name for --json
            assert action.metavar == "DIR", f"cgwm {verb} --out"
    flags = {(verb.split()[0], a.option_strings[0]) for verb, a in options if verb}  # "": the command's own
    assert {("init", "--data"), ("learn", "--data"), ("eval", "--data")} <= flags  # one flag for a dataset
    assert ("plan", "--trajectory") in flags and ("play", "--trajectory") in flags
    assert ("calibrate", "--camera") in flags and ("play", "--camera") in flags
    assert ("init", "--gaussians") in flags and ("learn", "--gaussians") in flags


def test_version_quiet_verbose_and_piped_progress(tmp_path):
    done = subprocess.run([CGWM, "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("cgwm ")
    args = ["demo", "--scene", "sim", "--seconds", "0.2"]
    piped = subprocess.run([CGWM, *args, "--out", str(tmp_path / "a")], capture_output=True, text=True)
    assert piped.returncode == 0 and "\r" not in piped.stdout + piped.stderr
    assert piped.stdout.strip().splitlines()[-1].startswith("demo sim: the dropped cube is still moving")
    quiet = subprocess.run([CGWM, "-q", *args, "--out", str(tmp_path / "b")], capture_output=True, text=True)
    lines = quiet.stdout.strip().splitlines()
    assert quiet.stderr == "" and len(lines) == 1 and lines[0].startswith("demo sim: the dropped cube")
    verbose = subprocess.run([CGWM, *args, "-v", "--out", str(tmp_path / "c")], capture_output=True, text=True)
    assert '"push_distance_mm"' in verbose.stderr  # the whole summary as detail
    synth = subprocess.run([CGWM, "synth", "--scenario", "fall", "--object", "cube", "--size", "16", "--out",
                            str(tmp_path / "d")], capture_output=True, text=True)
    assert synth.returncode == 0 and "\r" not in synth.stderr and len(synth.stderr.splitlines()) <= 5, synth.stderr
    assert "fall cube: done, 75/75 frames" in synth.stderr


def test_bench_accuracy_says_each_phase_of_each_case_in_plain_lines(tmp_path, capsys, monkeypatch):
    """The benchmark's real pipeline, cut to one small case (the cube's fall, a few iterations)."""
    from cgwm_env.bench import accuracy
    from cgwm_env.learn import stage1
    from cgwm_env.learn.evaluate import CemSettings
    from cgwm_env.learn.settings import LearnSettings

    tiny = accuracy.Plan(("cube",), 16, 6, 1,
                         stage1.Settings(grid=12, geometry_iterations=3, appearance_iterations=3, densify_every=20),
                         LearnSettings(iterations=1, candidates=2, track_iterations=1, identify_iterations=1),
                         CemSettings(samples=2, elites=1, iterations=1))
    monkeypatch.setattr(accuracy, "plan", lambda quick: tiny)
    monkeypatch.setattr(accuracy, "SCENARIOS", ("fall",))
    assert main(["bench", "accuracy", "--quick", "--json", str(tmp_path / "acc.json")]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("bench accuracy: cube")]
    assert "\r" not in err and len(lines) == 3, err
    assert lines[0].startswith("bench accuracy: cube: views and stage I done in ")
    kept = json.loads((tmp_path / "acc.json").read_text())["rows"][0]["kept"]
    assert lines[1].startswith("bench accuracy: cube, fall: stage II done in ") and lines[1].endswith(f"(kept {kept})")
    assert lines[2].startswith("bench accuracy: cube, fall: eval of 1 test clip(s) done in ") and "E_trans" in lines[2]
