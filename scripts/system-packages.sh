#!/usr/bin/env bash
# Debian packages that the set-up and the Python dependencies need:
#   python3.11 with venv and pip (only where the interpreter named by $1 cannot make a venv)
#   libegl1, libgl1, libgles2, libosmesa6: MuJoCo's offscreen rendering (MUJOCO_GL=egl or osmesa)
#   libusb-1.0-0: pyrealsense2 does not import without it
#   g++ and the interpreter's headers (python3.11-dev where missing): torch.compile builds C++
#   kernels (the compiled physics and the compiled MPC planner that `make demo` runs)
set -euo pipefail
python=${1:-python3.11}
pkgs=(libegl1 libgl1 libgles2 libosmesa6 libusb-1.0-0 g++)
if ! "$python" -c "import ensurepip, venv" >/dev/null 2>&1; then
  pkgs+=(python3.11 python3.11-venv python3-pip)
fi
include=$("$python" -c "import sysconfig; print(sysconfig.get_paths()['include'])" 2>/dev/null || true)
[ -n "$include" ] && [ -f "$include/Python.h" ] || pkgs+=(python3.11-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
