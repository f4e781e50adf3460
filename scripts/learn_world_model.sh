#!/usr/bin/env bash
# Learn a LEAP Hand world model of a library object from its MuJoCo twin, with the same settings
# for every object (cgwm learn-leap: 72 views at 96 px, stage I on a 30-voxel hull, 3 train/test
# pairs of LEAP Hand clips at 64 px, stage II with the test clips held out).
#   usage: scripts/learn_world_model.sh OBJECT OUT_DIR     (inside the venv: make setup first)
# OUT_DIR/model is the world-model bundle: `cgwm bench mpc --object OUT_DIR/model` plans with it.
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: $0 OBJECT OUT_DIR" >&2
    exit 2
fi
cgwm=${CGWM:-.venv/bin/cgwm}
export MUJOCO_GL=${MUJOCO_GL:-egl}
"$cgwm" learn-leap --object "$1" --out "$2"
