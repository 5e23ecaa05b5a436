"""The EdgeViT search space: configurations, ranges and sampling, analytic cost, the operator graph,
the PyTorch model (registered with timm as ``edgevit_xxs``, ``edgevit_xs``, ``edgevit_s``) and ONNX export.

Data flows one way from here: a :class:`EdgeViTConfig` goes to the model, the graph and the cost,
and from those to measurement (``device_farm``), prediction (``predictors``) and search (``nas``).
"""
from .config import BLOCK_KINDS, ConfigError, EdgeViTConfig, StageConfig, load_config
from .cost import Cost, StageCost, block_costs, cost
from .graph import OP_KINDS, Op, operators, to_networkx
from .presets import PRESETS, REFERENCE, edgevit_preset
from .space import DEFAULT_SPACE, REFERENCE_SEED, RandomSuggester, SearchSpace, reference_set

__all__ = [
    "BLOCK_KINDS",
    "ConfigError",
    "EdgeViTConfig",
    "StageConfig",
    "load_config",
    "Cost",
    "StageCost",
    "block_costs",
    "cost",
    "OP_KINDS",
    "Op",
    "operators",
    "to_networkx",
    "EdgeViT",
    "build_model",
    "PRESETS",
    "REFERENCE",
    "edgevit_preset",
    "DEFAULT_SPACE",
    "RandomSuggester",
    "SearchSpace",
    "REFERENCE_SEED",
    "reference_set",
]


def __getattr__(name: str):
    """The PyTorch model on first use: ``import search_space`` for configurations, cost and sampling
    stays free of torch and timm (about 4 s of import on 2 cores), so that ``nas --help``, the search
    driver and the measuring workers start without them. ``search_space.model`` registers the
    presets with timm when it is imported (by the first use of ``EdgeViT`` / ``build_model``)."""
    if name in ("EdgeViT", "build_model"):
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
