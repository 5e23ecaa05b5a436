"""Latency/energy predictors learned from measurements (issue #4) and accuracy proxies (issue #5).

Every predictor is a scikit-learn-style estimator (constructor stores parameters, ``fit`` returns
self, fitted state ends in ``_``) with JSON persistence (``to_dict`` / ``from_dict``); nothing is
ever unpickled.
"""
