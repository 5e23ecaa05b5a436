"""The ``nas`` command and, in later steps, the search itself (Optuna sampling, Ray scoring)."""
