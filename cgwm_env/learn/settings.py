"""Stage II's settings (LearnSettings) and their YAML file (configs/learn.yaml shows every key)."""

from __future__ import annotations

from dataclasses import dataclass

from cgwm_env.checks import check_count
from cgwm_env.config import read_yaml_mapping, settings_from_mapping
from cgwm_env.physics.collision import SoftSDFSettings

STRUCTURES = ("dssim", "loftr")
PARAMETERS = {"mass": (0,), "inertia": (1, 2), "mu": (3,), "stiffness": (4,), "damping": (5,)}  # -> to_leaves' indices
VELOCITY_MODES = ("auto", "estimate", "rest")


@dataclass(frozen=True)
class LearnSettings:
    """iterations: Adam steps; parameters: which of theta are learned (some of "mass",
    "inertia", "mu", "stiffness", "damping"; the others keep their initial values); lr: step
    on the unconstrained parameters (log mass, inertia factor, softplus^-1 mu, log stiffness,
    log damping); lr_geometry: step of the sphere
    centres, m (log-scales get lr_geometry / median scale; 0 freezes geometry); max_shift: how
    far a centre may move from stage I's, m; max_scale_change: how far a scale may move from
    stage I's, as a fraction of it; window: frames per truncated-BPTT window (0: the
    whole clip); lambda_structure: weight l of the structural term; structure: "dssim" or
    "loftr" (then loftr_weights, a local kornia LoFTR state dict, is required); substeps:
    physics steps per frame (dt = 1 / (fps substeps)); candidates: random orientations scored
    for the initial pose (estimate_pose; 128 left a resting duck and mug 1.7-2.3 rad off, in
    poses that fit the image worse than the true one); pose_iterations, velocity_iterations:
    refinement steps of the initial state; velocity: "estimate", "rest" or "auto" (estimate
    unless the clip has a pusher); max_stiffness_damping: with plain gains and the hand, the
    bound on the summed damping of its contact rows (project_gains; effective-mass gains are kept
    stable by identify.stable_gains); sdf_beta: LogSumExp sharpness of the learned
    model's soft signed distance, 1/m (the model's SoftSDFSettings.beta; over stage I's dense
    Gaussians the default 2000 pads the collision surface by up to 1.5 mm: configs/learn_leap.yaml).
    Free objects (fit_world_model): track_iterations: Adam steps per frame of the pose tracker;
    identify_iterations, identify_window: Adam steps and frames per shooting window of the
    state-space identification; holdout: the fraction of a clip's last frames held out to choose
    the kept parameters when there are fewer than three clips; determined: the standard error of a
    parameter's logarithm (identify.log_standard_errors) below which the clips count as determining
    it; min_gain: the fraction of the initial parameters' held-out error a fitted candidate must
    cut to be kept when identification did not determine all its parameters (a few held-out frames
    of a noisy track favour a wrong fit by chance; a determined fit is kept on any held-out gain);
    `iterations` is then the image-space refinement's."""

    iterations: int = 10
    parameters: tuple[str, ...] = ("mu", "stiffness", "damping")
    lr: float = 0.04
    lr_geometry: float = 0.0
    max_shift: float = 0.002
    max_scale_change: float = 0.1
    window: int = 5
    lambda_structure: float = 0.2
    structure: str = "dssim"
    loftr_weights: str | None = None
    substeps: int = 16
    candidates: int = 512
    pose_iterations: int = 60
    velocity_iterations: int = 40
    velocity: str = "auto"
    max_stiffness_damping: float = 1.9
    sdf_beta: float = SoftSDFSettings.beta
    track_iterations: int = 20
    identify_iterations: int = 60
    identify_window: int = 5
    holdout: float = 0.3
    determined: float = 0.5
    min_gain: float = 1.0 / 3.0
    seed: int = 0

    def __post_init__(self):
        for name, least in (("iterations", 0), ("window", 0), ("substeps", 1), ("candidates", 1),
                            ("pose_iterations", 0), ("velocity_iterations", 0), ("seed", 0), ("track_iterations", 1),
                            ("identify_iterations", 0), ("identify_window", 2)):
            check_count(getattr(self, name), name, least)
        for name in ("lr", "max_shift", "max_stiffness_damping", "sdf_beta"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a positive number, got {getattr(self, name)!r}")
        if not 0.0 < self.holdout < 1.0:
            raise ValueError(f"holdout: expected a fraction in (0, 1), got {self.holdout!r}")
        if not self.determined > 0:
            raise ValueError(f"determined: expected a positive standard error of a logarithm, got {self.determined!r}")
        if not 0.0 <= self.min_gain < 1.0:
            raise ValueError(f"min_gain: expected a fraction in [0, 1), got {self.min_gain!r}")
        if not 0.0 < self.max_scale_change < 1.0:
            raise ValueError(f"max_scale_change: expected a fraction in (0, 1), got {self.max_scale_change!r}")
        if not self.lr_geometry >= 0:
            raise ValueError(f"lr_geometry: expected a number >= 0 (m), got {self.lr_geometry!r}")
        if not 0.0 <= self.lambda_structure <= 1.0:
            raise ValueError(f"lambda_structure: expected a weight in [0, 1], got {self.lambda_structure!r}")
        if self.structure not in STRUCTURES:
            raise ValueError(f"structure: expected one of {STRUCTURES}, got {self.structure!r}")
        if self.structure == "loftr" and not self.loftr_weights:
            raise ValueError("loftr_weights: structure 'loftr' needs a local LoFTR weights file (none can be downloaded)")
        if self.velocity not in VELOCITY_MODES:
            raise ValueError(f"velocity: expected one of {VELOCITY_MODES}, got {self.velocity!r}")
        names = tuple(self.parameters) if isinstance(self.parameters, (list, tuple)) else ()
        if not names or len(set(names)) != len(names) or not set(names) <= set(PARAMETERS):
            raise ValueError(f"parameters: expected distinct names among {tuple(PARAMETERS)}, got {self.parameters!r}")
        object.__setattr__(self, "parameters", names)


def load_learn_settings(path) -> tuple[LearnSettings, dict]:
    """LearnSettings with a YAML file's values over the defaults, and the file's initial values
    (some of mass, mu, stiffness, damping); configs/learn.yaml shows every key. A ValueError names
    an unknown key."""
    data = read_yaml_mapping(path, "--config")
    initial = data.pop("initial", None) or {}
    bad = sorted(set(initial) - {"mass", "mu", "stiffness", "damping"})
    if bad:
        raise ValueError(f"initial.{bad[0]}: unknown setting in {path}; expected mass, mu, stiffness, damping")
    return settings_from_mapping(LearnSettings, data, source=str(path)), initial
