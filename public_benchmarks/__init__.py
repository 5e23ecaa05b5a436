"""Public benchmarks the project checks itself against: other people's measurements and trained
accuracies, with the code that rebuilds their networks.

Nothing here is used by the search; it is the yardstick for the predictors it uses (the few-shot
latency adapter, the zero-cost proxies). Modules, each with one job:

- :mod:`.data`: the one way to the benchmarks' data, shipped (gzip-compressed) in ``data/`` with
  each source's LICENSE and PROVENANCE.md (``bench/ship_data.py`` writes and checks them);
- :mod:`.nb201`: NAS-Bench-201 cells as PyTorch modules (arch-string parser, network, encoding);
- :mod:`.fbnet`: FBNet-space networks as PyTorch modules (parser, blocks, network, encoding);
- :mod:`.profiling`: cost counted on the real module (MACs, parameters, per-operator-kind
  profile), :class:`~.profiling.CostTable` for whole spaces, ``space_features`` and its disk cache;
- :mod:`.help`: the HELP few-shot latency benchmark (devices, splits, support and query sets,
  score) and ``DeviceBank``, the known devices' surrogates a new device is adapted from;
- :mod:`.vitbench`: ViT-Bench-101 records and their AutoFormer / PiT networks;
- :mod:`.proxy_eval`: every zero-cost proxy against trained accuracy on ViT-Bench-101 and
  NAS-Bench-Suite-Zero (``nas proxy eval``);
- :mod:`.imagenet_light`: real ImageNet-1k: light networks timm builds with their published
  top-1 (the selection rule), counted, and every accuracy score against them
  (``nas proxy eval --bench imagenet-light``).

Importing the package imports none of them (torch is heavy); import the module you need.
"""
