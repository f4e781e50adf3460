"""Benchmarks behind `cgwm bench`: each prints a table and can write its figures as JSON."""
