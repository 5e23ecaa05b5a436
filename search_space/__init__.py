"""The EdgeViT search space: configurations, ranges and sampling, analytic cost, the operator graph,
the PyTorch model (registered with timm as ``edgevit_xxs``, ``edgevit_xs``, ``edgevit_s``) and ONNX export.

Data flows one way from here: a :class:`EdgeViTConfig` goes to the model, the graph and the cost,
and from those to measurement (``device_farm``), prediction (``predictors``) and search (``nas``).
"""
from .config import BLOCK_KINDS, ConfigError, EdgeViTConfig, StageConfig, load_config
from .cost import Cost, StageCost, block_costs, cost
from .graph import OP_KINDS, Op, operators, to_networkx
from .model import EdgeViT, build_model
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
