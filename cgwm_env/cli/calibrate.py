"""`cgwm calibrate`: the camera's pose from ArUco markers (hardware.calibration), written as a camera JSON."""

from __future__ import annotations

import sys

import imageio.v3 as iio

from cgwm_env import progress
from cgwm_env.config import config_file
from hardware.calibration import calibrate, load_camera
from hardware.config import load_config
from hardware.realsense import RealSenseCamera, RealSenseError


def main(args) -> None:
    """`cgwm calibrate`: estimate the camera pose and write the camera JSON. A camera failure
    prints a clear message and exits with status 3."""
    path = args.config or config_file("hardware.yaml")
    config = load_config(path)
    if config.markers is None:
        raise ValueError(f"--config: {path} has no calibration section (dictionary and markers)")
    if args.image is not None:
        if args.intrinsics is None:
            raise ValueError("--intrinsics: calibrating from --image needs the camera's intrinsics (a camera JSON)")
        camera = load_camera(args.intrinsics)
        try:
            image = iio.imread(args.image)
        except Exception as err:  # imageio raises several types for unreadable files
            raise ValueError(f"--image: cannot read {args.image} ({err})") from err
        image = image[..., :3] if image.ndim == 3 else image
        dist = None
    else:
        c = config.camera
        try:
            with RealSenseCamera(None, c.width, c.height, c.fps) as rs_camera:
                image, camera = rs_camera.read().color, rs_camera.camera()
                intrinsics = rs_camera.intrinsics
                # OpenCV's model is (forward) Brown-Conrady; others are left out, and said so.
                brown = intrinsics.model == rs_camera._rs.distortion.brown_conrady
                dist = list(intrinsics.coeffs) if brown else None
                if not brown and any(intrinsics.coeffs):
                    progress.say(f"cgwm calibrate: note: ignoring {intrinsics.model} distortion {list(intrinsics.coeffs)}")
        except RealSenseError as err:
            print(f"cgwm calibrate: camera error: {err}", file=sys.stderr)
            raise SystemExit(3) from err
    posed, fit = calibrate(image, camera, config.markers, args.camera, dist)
    position = posed.position.double().numpy()
    progress.summary(f"calibrate: markers {list(fit.ids)}, reprojection RMS {fit.rmse_px:.3f} px; camera at "
                     f"({position[0]:.4f}, {position[1]:.4f}, {position[2]:.4f}) m in the world -> {args.camera}")
