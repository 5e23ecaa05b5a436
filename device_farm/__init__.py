"""Real measurement on real devices and the measurement store (issue #3); nothing is implemented yet."""
