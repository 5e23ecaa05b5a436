"""How accurate will a candidate be?

- :mod:`.proxies`: ten zero-cost proxies behind one ``score(model, ...)`` call, rank aggregation;
- :mod:`.reference`: how proxies are computed for an EdgeViT and the fixed population they are placed in;
- :mod:`.results`: the training-result records ``nas train`` writes, and the paper's anchors;
- :mod:`.model`: the proxy percentile and the predictor learned from results, and the choice between them.
"""
from .model import MIN_RESULTS, AccuracyPredictor, ProxyAccuracy, load_accuracy_model, load_reference
from .proxies import ALL_PROXIES, DEFAULT_PROXIES, PROXIES
from .reference import ANALYTIC_PROXIES, REFERENCE_SIZE, ProxySettings, proxy_input_side, raw_scores, reference_configs
from .results import ANCHORS, DEFAULT_RESULTS, ResultRecord, append_result, read_results

__all__ = ["MIN_RESULTS", "AccuracyPredictor", "ProxyAccuracy", "load_accuracy_model", "load_reference",
           "ALL_PROXIES", "DEFAULT_PROXIES", "PROXIES", "ANALYTIC_PROXIES", "REFERENCE_SIZE", "ProxySettings",
           "proxy_input_side", "raw_scores", "reference_configs", "ANCHORS", "DEFAULT_RESULTS", "ResultRecord",
           "append_result", "read_results"]
