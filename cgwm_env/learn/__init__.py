"""Learning a world model from video: stage I (Gaussians from views), stage II (physical parameters
and geometry from clips), the world-model bundle, and evaluation beside the paper's baselines."""
