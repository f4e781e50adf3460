"""MuJoCo scenes and the data they record: the ground truth our simulator and world models are checked against."""
