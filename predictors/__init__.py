"""Accuracy proxies and latency/energy predictors (issues #4 and #5); nothing is implemented yet."""
