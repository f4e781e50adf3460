"""MuJoCo scenes: the ground truth that our simulator and world models are checked against."""
