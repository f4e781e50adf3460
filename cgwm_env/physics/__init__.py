"""The simulator's functional core: Model (Gaussians, physical parameters, the LEAP Hand's
kinematics, contact settings), State, and step / rollout, pure torch functions."""
