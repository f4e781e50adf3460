"""cgwm: ContactGaussian world model."""
