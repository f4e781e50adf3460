"""A software camera that looks like a real one: what the scene looks like (a directional light
with shadows, a textured table) and what the sensor adds (per-frame exposure and white-balance
drift, shot and read noise, a depth stream with a D456-like noise model and holes, a small error
in the camera's calibrated pose).

`dress` puts SceneLook's light and table into a MuJoCo MjSpec; `Sensor` degrades the renders frame
by frame (its drift is a state, so one Sensor per recording). The virtual RealSense
(hardware.virtual) and the synthesis (cgwm_env.data.synth_capture, cgwm_env.envs.leap.clips) both
use this module, so tests and demos see one camera model.

The depth stream is a stereo camera's: depth z = f B / d from a disparity d (px) measured with an
error of `depth_subpixel` px RMS, so the depth error grows as z^2 sigma_d / (f B); nothing is
measured nearer than f B / max_disparity (the D456's minimum range at that resolution), and pixels
that one imager sees and the other does not (to the left of a near edge, the left imager being
the reference) have no depth, nor do random specks. Depth is quantized to `depth_units` m.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from cgwm_env.render.camera import Camera, from_mujoco


@dataclass(frozen=True)
class SceneLook:
    """A room's light and a table. light_dir: the direction the light travels in the world (it is
    normalised); light: its diffuse intensity; ambient: the headlight's ambient intensity (light
    that reaches shadows); shadow_px: MuJoCo's shadow map size; table_rgb: the table's mean colour
    in [0, 1]; table_tile: m of table per texture repeat; seed: the table's wood grain."""

    light_dir: tuple = (0.35, 0.25, -1.0)
    light: float = 0.65
    ambient: float = 0.4
    shadow_px: int = 2048
    table_rgb: tuple = (0.6, 0.47, 0.34)
    table_tile: float = 0.25
    seed: int = 0

    def __post_init__(self):
        if not (self.light >= 0 and self.ambient >= 0 and self.light + self.ambient > 0):
            raise ValueError(f"light, ambient: expected intensities >= 0, not both 0, got {self.light}, {self.ambient}")
        if np.linalg.norm(self.light_dir) == 0 or np.asarray(self.light_dir)[2] >= 0:
            raise ValueError(f"light_dir: expected a downward direction (z < 0), got {self.light_dir}")
        if not self.table_tile > 0:
            raise ValueError(f"table_tile: expected a length > 0 (m), got {self.table_tile}")


def table_texture(look: SceneLook, size: int = 256) -> np.ndarray:
    """A wood-like texture (size, size, 3) uint8 around look.table_rgb: grain along x, knots of noise."""
    from scipy import ndimage

    rng = np.random.default_rng(look.seed)
    grain = ndimage.gaussian_filter(rng.normal(size=(size, size)), (14.0, 1.0), mode="wrap")
    blotch = ndimage.gaussian_filter(rng.normal(size=(size, size)), 4.0, mode="wrap")
    shade = 1.0 + 2.2 * grain / grain.std() * 0.06 + blotch / blotch.std() * 0.05
    rgb = np.asarray(look.table_rgb, float)[None, None] * shade[..., None]
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def dress(spec, look: SceneLook, table_geoms=()) -> None:
    """Light `spec` (a mujoco.MjSpec) as `look` says: its own lights off, a dim headlight for
    ambient light, one directional light casting shadows; the geoms named in `table_geoms` get
    the wood texture (their rgba set to white so the texture shows as it is)."""
    import mujoco

    for light in spec.lights:
        light.active = False
    spec.visual.headlight.ambient = (look.ambient,) * 3
    spec.visual.headlight.diffuse = (0.0, 0.0, 0.0)
    spec.visual.headlight.specular = (0.0, 0.0, 0.0)
    spec.visual.quality.shadowsize = look.shadow_px
    direction = np.asarray(look.light_dir, float) / np.linalg.norm(look.light_dir)
    spec.worldbody.add_light(name="sun", type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL, castshadow=True,
                             pos=(-direction * 2.0).tolist(), dir=direction.tolist(), diffuse=[look.light] * 3,
                             ambient=[0.0] * 3, specular=[0.05] * 3)
    if not table_geoms:
        return
    image = table_texture(look)
    texture = spec.add_texture(name="table_wood", type=mujoco.mjtTexture.mjTEXTURE_2D, width=image.shape[1],
                               height=image.shape[0], nchannel=3)
    texture.data = image.tobytes()
    spec.add_material(name="table_wood", textures=["", "table_wood"], texuniform=True,
                      texrepeat=[1.0 / look.table_tile] * 2)
    for name in table_geoms:
        geom = spec.geom(name)
        geom.material, geom.rgba = "table_wood", [1.0, 1.0, 1.0, 1.0]


@dataclass(frozen=True)
class CameraModel:
    """What the sensor adds to a perfect render.

    exposure_step, white_balance_step: std of the per-frame change of log exposure and of the
    log gains of red and blue against green; drift_limit: bound on either log gain (the camera's
    auto exposure pulls it back); read_noise: DN std; shot_noise: DN of variance per DN of signal.
    Depth (a D456's stereo pair): baseline (m), depth_subpixel (px RMS disparity error),
    max_disparity (px: the minimum range is f baseline / max_disparity), max_depth (m, the
    farthest measured), speckle (the share of
    pixels that seed a hole of speckle_px px), depth_units (m per z16 step). pose_error:
    (m, degrees) of the error put into a calibrated pose (perturb_pose)."""

    exposure_step: float = 0.03
    white_balance_step: float = 0.01
    drift_limit: float = 0.15
    read_noise: float = 1.5
    shot_noise: float = 0.03
    baseline: float = 0.095
    depth_subpixel: float = 0.08
    max_disparity: int = 126
    speckle: float = 0.002
    speckle_px: int = 3
    depth_units: float = 0.001
    max_depth: float = 6.0
    depth_fov: float = 87.0
    depth_offset: tuple = (-0.0375, 0.0, 0.0)
    pose_error: tuple = (0.002, 0.3)

    def __post_init__(self):
        for name in ("exposure_step", "white_balance_step", "drift_limit", "read_noise", "shot_noise",
                     "depth_subpixel", "speckle"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: expected a number >= 0, got {getattr(self, name)!r}")
        for name in ("baseline", "max_disparity", "speckle_px", "depth_units", "max_depth"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a number > 0, got {getattr(self, name)!r}")
        if not 0 < self.depth_fov < 180:
            raise ValueError(f"depth_fov: expected a horizontal field of view in (0, 180) degrees, got {self.depth_fov}")
        if len(self.pose_error) != 2 or min(self.pose_error) < 0:
            raise ValueError(f"pose_error: expected (metres, degrees) >= 0, got {self.pose_error!r}")


class Sensor:
    """A camera's sensor at work: `color` and `depth` degrade one frame each, with exposure and
    white balance drifting from frame to frame (an AR(1) walk in log gain). seed: the noise."""

    def __init__(self, model: CameraModel = CameraModel(), seed=0):
        self.model = model
        self.rng = np.random.default_rng(seed)
        self.log_gain = np.zeros(3)  # log exposure + log white balance, per channel (R, G, B)

    def next_gains(self) -> np.ndarray:
        """Advance the drift by one frame; the colour gains (3,) of this frame."""
        m, rng = self.model, self.rng
        exposure = 0.9 * self.log_gain[1] + rng.normal(0.0, m.exposure_step)
        balance = 0.9 * (self.log_gain[[0, 2]] - self.log_gain[1]) + rng.normal(0.0, m.white_balance_step, 2)
        exposure = np.clip(exposure, -m.drift_limit, m.drift_limit)
        balance = np.clip(balance, -m.drift_limit, m.drift_limit)
        self.log_gain = np.array([exposure + balance[0], exposure, exposure + balance[1]])
        return np.exp(self.log_gain)

    def color(self, rgb: np.ndarray) -> np.ndarray:
        """A rendered frame (H, W, 3) uint8 as the sensor returns it: the next frame's gains, shot
        and read noise, clipped and rounded to uint8."""
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"rgb: expected (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
        m = self.model
        signal = rgb.astype(np.float64) * self.next_gains()
        sigma = np.sqrt(m.read_noise**2 + m.shot_noise * signal)
        return np.clip(np.rint(signal + sigma * self.rng.normal(size=signal.shape)), 0, 255).astype(np.uint8)

    def depth(self, z: np.ndarray, fx: float) -> np.ndarray:
        """A perfect depth map z (h, w) m (z along the optical axis; <= 0 or inf: nothing) as the
        stereo camera measures it with focal length fx (px) of its depth stream: (h, w) float32 m,
        0 where there is no measurement (too near, occluded for the second imager, a speck, or
        nothing there)."""
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2:
            raise ValueError(f"z: expected an (h, w) depth map (m), got shape {z.shape}")
        if not fx > 0:
            raise ValueError(f"fx: expected a focal length > 0 (px), got {fx!r}")
        m, rng = self.model, self.rng
        valid = np.isfinite(z) & (z > 0)
        disparity = np.where(valid, fx * m.baseline / np.where(valid, z, 1.0), 0.0)
        valid &= (disparity <= m.max_disparity) & (z <= m.max_depth)
        valid &= ~_occluded(disparity)
        if m.speckle > 0:
            from scipy import ndimage

            seeds = rng.random(z.shape) < m.speckle
            valid &= ~ndimage.binary_dilation(seeds, np.ones((m.speckle_px, m.speckle_px), bool))
        measured = disparity + m.depth_subpixel * rng.normal(size=z.shape)
        out = np.where(valid & (measured > 0), fx * m.baseline / np.where(measured > 0, measured, 1.0), 0.0)
        return (np.rint(out / m.depth_units) * m.depth_units).astype(np.float32)

def perturb_pose(T_cw, pose_error: tuple, rng: np.random.Generator) -> np.ndarray:
    """T_cw (4, 4) moved by pose_error (m, degrees): a translation of that length in a random
    direction and a rotation of that angle about a random axis, both in the camera frame."""
    T = np.asarray(T_cw, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"T_cw: expected a (4, 4) transform, got {T.shape}")
    metres, degrees = pose_error
    axis, direction = (v / np.linalg.norm(v) for v in rng.normal(size=(2, 3)))
    delta = np.eye(4)
    delta[:3, :3] = Rotation.from_rotvec(axis * math.radians(degrees)).as_matrix()
    delta[:3, 3] = metres * direction
    return delta @ T


def calibrated(camera: Camera, software: SoftwareCamera) -> Camera:
    """`camera` as a calibration of it gives it: its pose off by software.model.pose_error in a
    direction drawn from software.seed."""
    rng = np.random.default_rng((software.seed, 1))
    T = perturb_pose(camera.T_cw.double().numpy(), software.model.pose_error, rng)
    c = camera
    return Camera(c.fx, c.fy, c.cx, c.cy, c.width, c.height, torch.tensor(T, dtype=torch.float32))


def average_still(colors: list, depths: list | None) -> tuple[np.ndarray, np.ndarray | None]:
    """One picture of a still scene from several frames: the mean of the colour frames (H, W, 3)
    uint8 and the median of the measured depths (h, w) m, 0 where no frame measured one (or None
    without depths)."""
    color = np.rint(np.mean(colors, axis=0)).astype(np.uint8)
    if depths is None:
        return color, None
    stack = np.stack(depths).astype(np.float64)
    stack[stack == 0] = np.nan
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pixels that no frame measured
        depth = np.nan_to_num(np.nanmedian(stack, axis=0), nan=0.0).astype(np.float32)
    return color, depth


def _occluded(disparity: np.ndarray, reach: int = 64) -> np.ndarray:
    """Pixels (h, w) bool that the left (reference) imager sees and the right one, baseline to the
    right, does not: a pixel at column j with disparity d lands at j - d in the right image, and
    is hidden there by any pixel j + k (k >= 1) nearer by at least k px of disparity."""
    hidden = np.zeros(disparity.shape, bool)
    for k in range(1, min(reach, disparity.shape[1])):
        hidden[:, :-k] |= disparity[:, k:] - disparity[:, :-k] >= k
    return hidden & (disparity > 0)


def depth_camera(color: Camera, model: CameraModel, width: int, height: int) -> tuple[Camera, np.ndarray]:
    """The depth stream's camera beside the posed colour camera `color`: width x height px, the
    model's horizontal field of view, square pixels, the principal point centred, its centre at
    model.depth_offset in the colour camera's frame. Returns it (posed in the world) and
    T_color_depth (4, 4), depth-camera coordinates to colour-camera coordinates."""
    f = 0.5 * width / math.tan(math.radians(model.depth_fov) / 2)
    T_color_depth = np.eye(4)
    T_color_depth[:3, 3] = model.depth_offset
    T_cw = np.linalg.inv(T_color_depth) @ color.T_cw.double().numpy()
    return Camera(f, f, 0.5 * width, 0.5 * height, width, height, torch.tensor(T_cw, dtype=torch.float32)), T_color_depth


def place_mujoco_camera(model, camera: int, T_cw, fy: float, height: int) -> None:
    """Move MuJoCo camera `camera` (id) of `model` to the world-to-camera pose T_cw (4, 4) (our
    axes: x right, y down, z forward) with the vertical field of view of focal length fy (px) on
    an image `height` px tall (MuJoCo's cameras have square pixels and a centred principal point)."""
    import mujoco

    T = np.asarray(T_cw, dtype=np.float64)
    R = T[:3, :3]
    model.cam_pos[camera] = -R.T @ T[:3, 3]
    mujoco.mju_mat2Quat(model.cam_quat[camera], np.stack((R[0], -R[1], -R[2]), axis=1).reshape(-1))
    model.cam_fovy[camera] = math.degrees(2.0 * math.atan(0.5 * height / fy))


@dataclass(frozen=True)
class SoftwareCamera:
    """A software camera that looks like a real one: the room's look, the sensor's model, and
    whether it streams depth (a grid of depth_width x 9/16 of it, 0: no depth; twice the colour
    width gives the depth pixels about the colour's size over the colour's view). seed: the
    sensor's noise and drift, and the calibration error."""

    look: SceneLook = SceneLook()
    model: CameraModel = CameraModel()
    depth_width: int = 256
    seed: int = 0

    @property
    def depth_size(self) -> tuple[int, int] | None:
        """(width, height) px of the depth stream, or None."""
        return (self.depth_width, round(self.depth_width * 9 / 16)) if self.depth_width else None


DEPTH_CAMERA = "depth_cam"  # the MuJoCo camera prepare_spec adds for the depth stream


def prepare_spec(spec, software: SoftwareCamera, table_geoms=()) -> None:
    """Make a MuJoCo scene (MjSpec) ready for SoftwareRig: dressed with software.look (the
    `table_geoms` textured), a fixed camera DEPTH_CAMERA for the depth stream, and an offscreen
    buffer large enough for it."""
    import mujoco

    dress(spec, software.look, table_geoms)
    if software.depth_size is not None:
        spec.worldbody.add_camera(name=DEPTH_CAMERA, mode=mujoco.mjtCamLight.mjCAMLIGHT_FIXED)
        width, height = software.depth_size
        spec.visual.global_.offwidth = max(spec.visual.global_.offwidth, width)
        spec.visual.global_.offheight = max(spec.visual.global_.offheight, height)


class SoftwareRig:
    """A SoftwareCamera at work in a compiled MuJoCo scene prepared by prepare_spec: `frame`
    renders the colour camera `camera_name` (width x height px) through the sensor, the depth
    stream from DEPTH_CAMERA (placed at the colour camera's side by `aim`), and MuJoCo's
    segmentation for the ground truth. lock: held while `data` is read (another thread steps
    it), or None. Call close() (or use as a context manager)."""

    def __init__(self, model, data, camera_name: str, width: int, height: int, software: SoftwareCamera,
                 lock=None):
        import mujoco

        self._mujoco, self.model, self.data = mujoco, model, data
        self.camera_name, self.software = camera_name, software
        self.lock = contextlib.nullcontext() if lock is None else lock
        self.sensor = Sensor(software.model, software.seed)
        self.renderer = mujoco.Renderer(model, height, width)
        self.depth_renderer = None
        self.depth_camera, self.T_color_depth = None, None
        if software.depth_size is not None:
            self.depth_renderer = mujoco.Renderer(model, software.depth_size[1], software.depth_size[0])
            self.depth_renderer.enable_depth_rendering()
        self.aim()

    def aim(self) -> None:
        """Read the colour camera's pose and put the depth camera at its side (after it moved)."""
        with self.lock:
            self._mujoco.mj_forward(self.model, self.data)
            self.color_camera = from_mujoco(self.model, self.data, self.camera_name, self.renderer.width,
                                            self.renderer.height)
        if self.depth_renderer is None:
            return
        width, height = self.software.depth_size
        self.depth_camera, self.T_color_depth = depth_camera(self.color_camera, self.software.model, width, height)
        place_mujoco_camera(self.model, self.model.camera(DEPTH_CAMERA).id, self.depth_camera.T_cw,
                            float(self.depth_camera.fy), height)

    def clean(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """The perfect renders of the current state: colour (H, W, 3) uint8, depth (h, w) m on the
        depth grid (or None), MuJoCo's segmentation (H, W, 2) int (object id, object type)."""
        r = self.renderer
        with self.lock:
            self._mujoco.mj_forward(self.model, self.data)
            r.update_scene(self.data, camera=self.camera_name)
            if self.depth_renderer is not None:
                self.depth_renderer.update_scene(self.data, camera=DEPTH_CAMERA)
        rgb = r.render().copy()
        r.enable_segmentation_rendering()
        seg = r.render().copy()
        r.disable_segmentation_rendering()
        depth = None if self.depth_renderer is None else self.depth_renderer.render().copy()
        return rgb, depth, seg

    def frame(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """What the camera delivers for the current state: colour (H, W, 3) uint8 and depth (h, w)
        float32 m (0: none; or None) through the sensor, and the ground-truth segmentation."""
        rgb, depth, seg = self.clean()
        color = self.sensor.color(rgb)
        if depth is not None:
            depth = self.sensor.depth(depth, float(self.depth_camera.fx))
        return color, depth, seg

    def still(self, frames: int = 8) -> tuple[np.ndarray, np.ndarray | None]:
        """A user's picture of a still scene: the mean of `frames` colour frames and the median of
        the measured depths (0 where no frame measured one)."""
        shots = [self.frame() for _ in range(frames)]
        return average_still([s[0] for s in shots], None if shots[0][1] is None else [s[1] for s in shots])

    def calibrated_camera(self) -> Camera:
        """The colour camera as a calibration gives it (calibrated)."""
        return calibrated(self.color_camera, self.software)

    def close(self) -> None:
        self.renderer.close()
        if self.depth_renderer is not None:
            self.depth_renderer.close()

    def __enter__(self) -> "SoftwareRig":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
