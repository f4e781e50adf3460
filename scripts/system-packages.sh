#!/usr/bin/env bash
# Debian packages the Python dependencies need at run time:
#   libegl1, libgl1, libosmesa6: MuJoCo's offscreen rendering (MUJOCO_GL=egl or osmesa)
#   libusb-1.0-0: pyrealsense2 does not import without it
set -euo pipefail
pkgs=(libegl1 libgl1 libgles2 libosmesa6 libusb-1.0-0)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
