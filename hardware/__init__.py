"""The LEAP Hand and its camera: Dynamixel driver (dynamixel), RealSense capture (realsense), ArUco
camera calibration (calibration), open-loop playback of planned trajectories (playback), settings
(config), and a virtual bus and camera for dry runs and tests (virtual); `cgwm bench hardware`
(cgwm_env.bench.hardware) times them.
"""
