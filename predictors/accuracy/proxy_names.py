"""The zero-cost proxies by name, without torch: what the search, the command line and the saved
models check names against. The functions behind the names are in :mod:`.proxies` (torch), which a
caller imports only to compute a proxy; :mod:`.proxies` refuses to import when the two lists differ.
"""
from __future__ import annotations

__all__ = ["ALL_PROXIES", "DEFAULT_PROXIES"]

#: Every proxy :data:`predictors.accuracy.proxies.PROXIES` computes, in its order.
ALL_PROXIES: tuple[str, ...] = ("params", "macs", "synflow", "snip", "grad_norm", "jacob_cov", "naswot", "zico", "meco",
                                "dss")

#: The proxies the default score aggregates: params + zico + dss (:mod:`.proxies`' docstring says how
#: they were chosen). History on 2026-11-25: synflow + jacob_cov + meco (chosen on NAS-Bench-201 alone)
#: lost to #params on every ViT-Bench-101 CIFAR-100 column; synflow + zico (chosen on the benchmarks
#: alone) scored EdgeViT-XS below XXS and let the search prefer 8 ms networks at a 47 ms budget.
DEFAULT_PROXIES: tuple[str, ...] = ("params", "zico", "dss")
