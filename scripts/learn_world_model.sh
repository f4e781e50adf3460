#!/usr/bin/env bash
# Learn a LEAP Hand world model of a library object from MuJoCo data, as the bundled cube, cup and
# L-block (cgwm_env/assets/world_models/) were made: 72 views at 96 px, stage I on a 30-voxel hull,
# 3 LEAP Hand clips at 64 px, then stage II from mu 0.2, K 40 N/m, D 1 N s/m (configs/learn_leap.yaml).
#   usage: scripts/learn_world_model.sh OBJECT OUT_DIR [LR]     (inside the venv: make setup first)
# OUT_DIR/model is the world-model bundle; copy it to cgwm_env/assets/world_models/OBJECT for
# `cgwm bench mpc`. LR overrides the config's 0.12 (the L-block's diverged at 0.12: 0.06).
set -euo pipefail
object=$1 out=$2 lr=${3:-}
cgwm=${CGWM:-.venv/bin/cgwm}
export MUJOCO_GL=${MUJOCO_GL:-egl}
"$cgwm" synth --scenario multiview --object "$object" --out "$out/views" --size 96
"$cgwm" init --data "$out/views/views_000" --gaussians "$out/gaussians.npz" --grid 30
"$cgwm" synth --scenario leap --object "$object" --out "$out/leap" --episodes 3 --size 64
"$cgwm" learn --data "$out/leap" --gaussians "$out/gaussians.npz" --out "$out/model" \
    --config learn_leap.yaml --mu 0.2 --stiffness 40 --damping 1.0 ${lr:+--lr "$lr"}
