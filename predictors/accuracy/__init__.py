"""How accurate will a candidate be?

- :mod:`.proxies`: ten zero-cost proxies behind one ``score(model, ...)`` call, rank aggregation;
- :mod:`.reference`: how proxies are computed for an EdgeViT and the fixed population they are placed in;
- :mod:`.results`: the training-result records ``nas train`` writes, and the paper's anchors;
- :mod:`.prior`: the accuracy prior, top-1 from params, MACs, resolution and depth fitted on published results;
- :mod:`.domain`: the range a score was validated on;
- :mod:`.model`: the default score (the prior corrected by results), the opt-in proxy percentile, the
  predictor learned from results, and the choice between them.
"""
from .domain import Domain
from .model import (DEFAULT_SOURCE, MIN_RESULTS, PRIOR_DATASET, AccuracyPredictor, ProxyAccuracy, load_accuracy_model,
                    load_reference, proxy_names)
from .prior import AccuracyPrior, PriorRow, load_prior, row_of
from .proxy_names import ALL_PROXIES, DEFAULT_PROXIES
from .reference import ANALYTIC_PROXIES, REFERENCE_SIZE, ProxySettings, proxy_input_side, raw_scores, reference_configs
from .results import ANCHORS, DEFAULT_RESULTS, ResultRecord, append_result, read_results

__all__ = ["Domain", "DEFAULT_SOURCE", "PRIOR_DATASET", "proxy_names", "AccuracyPrior", "PriorRow", "load_prior", "row_of",
           "MIN_RESULTS", "AccuracyPredictor", "ProxyAccuracy", "load_accuracy_model", "load_reference",
           "ALL_PROXIES", "DEFAULT_PROXIES", "PROXIES", "ANALYTIC_PROXIES", "REFERENCE_SIZE", "ProxySettings",
           "proxy_input_side", "raw_scores", "reference_configs", "ANCHORS", "DEFAULT_RESULTS", "ResultRecord",
           "append_result", "read_results"]


def __getattr__(name: str):
    """``PROXIES`` (the proxies' functions) on first use: importing this package for the default score
    or a name check stays free of torch."""
    if name == "PROXIES":
        from .proxies import PROXIES

        return PROXIES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
