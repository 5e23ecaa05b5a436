"""A phone's latency model: block regressors composed over the mapped parts of a candidate.

Fitted on a phone's measured blocks (``fit(blocks, y)``: nn-Meter table keys or
:class:`~predictors.latency.phone.blocks.BlockSpec`, latencies in ms), it predicts whole EdgeViT
candidates (``predict(cfgs) -> (mean, std)``) by cutting each into parts
(:mod:`~predictors.latency.phone.mapping`) and pricing each part with the regressor of its block
type, or with the rate model where no block type covers it.

Uncertainty: a part's relative std is the held-out RMS log error of its regressor; when the query
lies outside the measured range of a feature, the error of the matching extrapolation split, scaled
up by how much further (in log distance) the query lies beyond the range than that split's test
values did. Added in quadrature: 5 % for direct parts (activation and bias differences; a
judgment), 15 % for approximate parts, and for attention the measured one-step v_scale
extrapolation error. Parts sharing a (block type, provenance) have correlated errors and are
summed linearly; groups are combined in quadrature. The sum of block
latencies ignores inter-block effects (nn-Meter's premise); nothing here was measured on a phone by
this project.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from sklearn.linear_model import LinearRegression

from search_space import EdgeViTConfig
from search_space.files import FileFormatError, read_json, write_json

from ...base import LatencyEstimator, ModelFileError, check_configs, check_targets, fitted, register, state_number
from ...metrics import regression_metrics
from .blocks import BLOCK_TYPES, IGNORED_KEYS, BlockSpec, block_work, format_number, parse_key
from .mapping import BLOCK_KINDS, DEFAULT_MAPPING, OWN_ATTENTION_KIND, PROVENANCES, map_candidate
from .regressors import EXTRAPOLATION_SPLITS, BlockRegressor, RateModel, extrapolation_split, feature_value, random_split
from .tables import check_device, load_table

__all__ = ["FIT_VERSION", "APPROX_SIGMA", "DIRECT_SIGMA", "WEIGHT_SIGMA", "KERNEL_BEYOND_TABLE_SIGMA",
           "ATTENTION_BEYOND_TABLE_SIGMA", "BEYOND_TABLE_SIGMA", "PartPrediction",
           "PhonePrediction", "PhoneLatencyPredictor", "fp32_weight_mb", "table_blocks", "fit_phone", "predict_phone_latency", "predict_phone_latency_batch"]

#: Version of what fitting a phone model computes: bump it whenever a change here, in the mapping or in
#: the regressors changes a fitted model, so that shipped and cached fits are refitted.
#: 2: the default mapping became ``v2`` (issue #14).
#: 3: ``model="auto"`` selects on every extrapolation split of the type, not only the largest hw and
#: channels (the three phones' fits came out identical; a device table's may not).
FIT_VERSION = 3

#: Relative mapping uncertainty added (in quadrature) to approximate parts. A judgment, not measured.
APPROX_SIGMA = 0.15
#: Relative uncertainty added (in quadrature) to direct parts for the operator differences a direct
#: mapping keeps (GELU for h-swish, biases, EdgeViT's exporter against nn-Meter's Keras graph). A judgment.
DIRECT_SIGMA = 0.05
#: Relative uncertainty of the weight-traffic part (:attr:`PhoneLatencyPredictor.weight_ms_per_mb`): its
#: per-MB cost comes from four chain measurements, not from whole networks; a judgment, not measured.
WEIGHT_SIGMA = 0.3
#: Relative std floor of a conv part queried at a kernel beyond its table (nn-Meter's tables stop at 5;
#: the search space's LocalAgg has 7). The table's own kernel split (fit on 3, test 5) cannot see a
#: runtime's change of depthwise kernel class: on LiteRT on this project's Intel Xeon, kernel-7
#: LocalAgg half-blocks predicted (v2) from a 3-and-5 table came out at 0.29-0.85 of their measured
#: time, RMS log error 0.74 over 10 (bench/RESULTS.md, phone_validation, sixth round; printed by
#: ``python bench/phone_validation.py --recorded bench/results/phone_validation_table_xeon_parts.json``).
#: Measured on one CPU, applied to every device whose table lacks the kernel: a judgment on how wide
#: to be, not a phone figure.
KERNEL_BEYOND_TABLE_SIGMA = 0.74
#: Relative std floor of an attention part queried beyond its table's largest side (nn-Meter's grid
#: stops at 32 x 32 = 1,024 tokens; a stage-0 global attention at 160-256 px attends over 1,600-4,096).
#: The table's own hw split (fit on smaller sides, test on 32) gave s21 0.18 at 4,096 tokens, where
#: LiteRT on this project's Intel Xeon missed such attention half-blocks (v2) at 1.40x and 0.62x of
#: their time (a same-device table) and 0.50x (the AMD EPYC's table), RMS log error 0.52 over these 3
#: (bench/RESULTS.md, phone_validation, eighth round; printed by ``python bench/phone_validation.py
#: --recorded bench/results/phone_validation_table_xeon_parts.json`` and ``... phone_validation_table.json``).
#: Three half-blocks on one CPU, applied to every device: a judgment on how wide to be, not a phone figure.
ATTENTION_BEYOND_TABLE_SIGMA = 0.52
#: The measured floors by (extrapolation split, block type; None: every type with that feature).
BEYOND_TABLE_SIGMA: dict[tuple[str, str | None], float] = {("kernel_max", None): KERNEL_BEYOND_TABLE_SIGMA,
                                                          ("hw_max", "transattn"): ATTENTION_BEYOND_TABLE_SIGMA}
#: A block type with fewer measured blocks than this is fitted on all of them, with no held-out split.
MIN_HELDOUT_ROWS = 5


@dataclass(frozen=True)
class PartPrediction:
    half_block: str
    ms: float
    provenance: str
    block_type: str
    part: str = ""
    std_ms: float = 0.0
    extrapolated: bool = False
    detail: str = ""
    ops: tuple[str, ...] = ()


@dataclass(frozen=True)
class PhonePrediction:
    device_id: str
    arch_id: str
    total_ms: float
    std_ms: float
    parts: tuple[PartPrediction, ...] = field(default_factory=tuple)

    def share(self) -> dict[str, float]:
        """Fraction of the total predicted from direct / approximate / transferred parts."""
        out = dict.fromkeys(PROVENANCES, 0.0)
        for p in self.parts:
            out[p.provenance] += p.ms
        return {k: v / self.total_ms for k, v in out.items()}

    def half_blocks(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for p in self.parts:
            out[p.half_block] = out.get(p.half_block, 0.0) + p.ms
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["parts"] = [asdict(p) for p in self.parts]
        return d


@register
class PhoneLatencyPredictor(LatencyEstimator):
    """Block regressors, held-out and extrapolation reports, and the EdgeViT mapping for one phone.

    ``fit(blocks, y)``: the phone's measured blocks (table keys or :class:`BlockSpec`) and their
    latencies in ms (:func:`fit_phone` reads a shipped table). ``predict(cfgs)``: whole candidates,
    ``(mean, std)`` in ms; :meth:`predict_parts` gives the parts with their provenance.
    ``refit_full``: after the held-out evaluation, refit the chosen kind on every row (the evaluated
    model is the 80 % one). ``device_id`` only labels the predictions.

    ``weight_ms_per_mb``: the device's cost of fetching a MB of weights that a block timed alone keeps
    in its caches (:func:`~.device_table.measure_weight_traffic`); when set, every candidate gets one
    more part, ``weight_traffic`` (provenance ``network``), of that times its fp32 weights. 0 (the
    default, and the phones' value while no phone has measured it): nn-Meter's premise, a network is
    the sum of its blocks timed alone.
    """

    kind = "phone-blocks"

    def __init__(self, device_id: str = "s21", model: str = "auto", test_size: float = 0.2, random_state: int = 0,
                 extrapolation: bool = True, refit_full: bool = True, block_types: Sequence[str] = BLOCK_TYPES,
                 n_estimators: int = 150, mapping: str = DEFAULT_MAPPING, weight_ms_per_mb: float = 0.0):
        self.device_id = device_id
        self.model = model
        self.test_size = test_size
        self.random_state = random_state
        self.extrapolation = extrapolation
        self.refit_full = refit_full
        self.block_types = block_types
        self.n_estimators = n_estimators
        self.mapping = mapping
        self.weight_ms_per_mb = weight_ms_per_mb

    def _reg(self, btype: str, model: str) -> BlockRegressor:
        return BlockRegressor(btype, model=model, random_state=self.random_state, n_estimators=self.n_estimators)

    def _kind(self, btype: str, specs: Sequence[BlockSpec] = ()) -> str:
        """The regressor kind for ``btype``: the one the mapping version fixes, else ``model``.

        v2 fixes attention to the work-count kind because nn-Meter's attention blocks (C/16 heads
        each, all with the position bias) cannot identify the split between score and matmul work; a
        table that measured attention of its own (key suffixes ``_h``, ``_nopos``) can, and gets
        :data:`~.mapping.OWN_ATTENTION_KIND`, which learns what work counts miss (on this project's
        Intel Xeon, LiteRT ran one-head attention at 4,096 tokens 1.7-1.9x slower than two heads of
        the same width: bench/RESULTS.md, ninth round)."""
        fixed = BLOCK_KINDS.get(self.mapping, {}).get(btype)
        if fixed and btype == "transattn" and any(s.heads or not s.pos_bias for s in specs):
            return OWN_ATTENTION_KIND
        return fixed or self.model

    def fit(self, blocks: Sequence[BlockSpec | str], y: Sequence[float]) -> "PhoneLatencyPredictor":
        w = self.weight_ms_per_mb
        if not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ValueError(f"weight_ms_per_mb={w!r}: allowed: a finite number >= 0 (ms per MB of weights)")
        for t in self.block_types:
            if t not in BLOCK_TYPES:
                raise ValueError(f"block_types={t!r}: allowed: {', '.join(BLOCK_TYPES)}")
        specs_all = [parse_key(b) if isinstance(b, str) else b for b in blocks]
        y_all = check_targets(y, len(specs_all))
        by_type: dict[str, list[tuple[BlockSpec, float]]] = {t: [] for t in BLOCK_TYPES}
        for spec, v in zip(specs_all, y_all):
            if not isinstance(spec, BlockSpec):
                raise TypeError(f"blocks: expected table keys or BlockSpec, got {type(spec).__name__}")
            by_type[spec.type].append((spec, float(v)))
        self.regressors_: dict[str, BlockRegressor] = {}
        self.heldout_: dict[str, dict[str, Any]] = {}
        self.extrapolation_: dict[str, dict[str, Any]] = {}
        self.sigma_: dict[str, dict[str, float]] = {}
        pooled_tr: list[tuple[BlockSpec, float]] = []
        pooled_te: list[tuple[BlockSpec, float]] = []

        def baseline(specs_tr, y_tr, specs_te, y_te):
            w_tr = [block_work(s) for s in specs_tr]
            w_te = [block_work(s) for s in specs_te]
            X_tr = np.array([[w.macs, w.params] for w in w_tr])
            X_te = np.array([[w.macs, w.params] for w in w_te])
            lin = LinearRegression().fit(X_tr, y_tr)
            m = regression_metrics(y_te, np.maximum(lin.predict(X_te), 1e-6)).as_dict()
            macs = regression_metrics(y_te, np.array([w.macs for w in w_te]))
            return m, {"kendall_tau": macs.kendall_tau, "spearman": macs.spearman}

        for t in self.block_types:
            rows = by_type[t]
            if not rows:
                continue
            specs = [s for s, _ in rows]
            y = np.array([v for _, v in rows])
            tr, te = random_split(len(y), self.test_size, self.random_state)
            if len(y) < MIN_HELDOUT_ROWS:
                # Too few blocks of this type to hold any out (a few-shot table): fit on all of them and let
                # its uncertainty be the worst held-out figure of the other types (filled in below).
                reg = self._reg(t, self._kind(t, specs)).fit(specs, y)
                self.heldout_[t] = {"kind": reg.kind_, "n_train": int(len(y)), "model": None,
                                    "why": f"{len(y)} blocks < {MIN_HELDOUT_ROWS}: no held-out split"}
                self.sigma_[t] = {}
                self.regressors_[t] = reg
                continue
            reg = self._reg(t, self._kind(t, specs)).fit([specs[i] for i in tr], y[tr])
            pred = reg.predict([specs[i] for i in te])
            lin_m, rank = baseline([specs[i] for i in tr], y[tr], [specs[i] for i in te], y[te])
            self.heldout_[t] = {"kind": reg.kind_, "n_train": int(len(tr)),
                                "model": regression_metrics(y[te], pred).as_dict(),
                                "linear_macs_params": lin_m, "macs_rank": rank, "validation": reg.validation_}
            pooled_tr += [rows[i] for i in tr]
            pooled_te += [rows[i] for i in te]
            sig = {"random": self.heldout_[t]["model"]["rms_log"]}
            if self.extrapolation:
                self.extrapolation_[t] = {}
                for feat, direction in EXTRAPOLATION_SPLITS[t]:
                    etr, ete = extrapolation_split([feature_value(s, feat) for s in specs], direction)
                    if len(ete) == 0 or len(etr) < 2:
                        continue
                    ereg = self._reg(t, reg.kind_).fit([specs[i] for i in etr], y[etr])
                    em = regression_metrics(y[ete], ereg.predict([specs[i] for i in ete])).as_dict()
                    elin, erank = baseline([specs[i] for i in etr], y[etr], [specs[i] for i in ete], y[ete])
                    held = sorted({feature_value(specs[i], feat) for i in ete})
                    trained = [feature_value(specs[i], feat) for i in etr]
                    bound = max(trained) if direction == "max" else min(trained)
                    far = held[-1] if direction == "max" else held[0]
                    self.extrapolation_[t][f"{feat}_{direction}"] = {
                        "held_out_values": [format_number(v) for v in held], "train_bound": bound, "far": far,
                        "model": em, "linear_macs_params": elin, "macs_rank": erank}
                    sig[f"{feat}_{direction}"] = em["rms_log"]
            self.sigma_[t] = sig
            self.regressors_[t] = self._reg(t, reg.kind_).fit(specs, y) if self.refit_full else reg
        if not self.regressors_:
            raise ValueError(f"blocks: none of the block types {', '.join(self.block_types)}")
        measured_sigma = [v["random"] for v in self.sigma_.values() if "random" in v]
        for t, sig in self.sigma_.items():
            if not sig:
                sig["random"] = float(max(measured_sigma)) if measured_sigma else 0.5
        if not pooled_tr:
            pooled_tr = [r for t in self.regressors_ for r in by_type[t]]
        # rate model: held-out on the pooled split of its block types, transfer to the others, refit on all
        rm = RateModel().fit([s for s, _ in pooled_tr], [v for _, v in pooled_tr])
        te_specs = [s for s, _ in pooled_te]
        te_y = np.array([v for _, v in pooled_te])
        te_pred = rm.predict(te_specs) if te_specs else np.zeros(0)
        on_fitted = [i for i, s in enumerate(te_specs) if s.type in rm.block_types]
        self.rate_heldout_ = {}
        if on_fitted:
            m = regression_metrics(te_y[on_fitted], te_pred[on_fitted]).as_dict()
            m["bias_log"] = float(np.mean(np.log(te_pred[on_fitted] / te_y[on_fitted])))
            self.rate_heldout_["fitted_types"] = m
        for t in self.block_types:
            idx = [i for i, s in enumerate(te_specs) if s.type == t]
            if idx:
                m = regression_metrics(te_y[idx], te_pred[idx]).as_dict()
                m["bias_log"] = float(np.mean(np.log(te_pred[idx] / te_y[idx])))
                self.rate_heldout_[t] = m
        # Transferred parts are token-wise LayerNorms, adds, Linear/1x1 convs and depthwise convs: the
        # rate model's error on transffn (LayerNorm, Linear, h-swish, add on tokens; not fitted on)
        # measures that transfer; the held-out error on its own block types is the floor.
        cands = [self.rate_heldout_[k]["rms_log"] for k in ("fitted_types", "transffn") if k in self.rate_heldout_]
        self.transfer_sigma_ = float(max(cands)) if cands else 0.5
        all_rows = [r for t in self.block_types for r in by_type[t]]
        self.rate_ = RateModel().fit([s for s, _ in all_rows], [v for _, v in all_rows]) if self.refit_full else rm
        self.n_keys_ = int(sum(len(by_type[t]) for t in self.block_types))
        return self

    # -- uncertainty of one measured-type query
    def _sigma(self, spec: BlockSpec) -> tuple[float, bool]:
        """Relative std of one block prediction and whether it extrapolates.

        Inside the measured ranges: the random-split RMS log error. Outside: the error of the
        matching extrapolation split, scaled up by how much further the query lies beyond the
        fitted range than that split's farthest test value lay beyond its training range (in log
        distance; never scaled down). With no matching split, the largest error of the type. A
        kernel beyond the table's largest is at least :data:`KERNEL_BEYOND_TABLE_SIGMA`, an attention
        beyond the table's largest side at least :data:`ATTENTION_BEYOND_TABLE_SIGMA` (:data:`BEYOND_TABLE_SIGMA`).
        """
        reg = self.regressors_[spec.type]
        sig = self.sigma_.get(spec.type, {})
        ext = self.extrapolation_.get(spec.type, {})
        s = sig.get("random", 0.1)
        oor = reg.out_of_range(spec)
        for feat, direction in oor:
            name = f"{feat}_{direction}"
            if name in sig:
                lo, hi = reg.ranges_[feat]
                v = feature_value(spec, feat)
                e = ext.get(name, {})
                bound, far = e.get("train_bound"), e.get("far")
                factor = 1.0
                if bound and far and bound > 0 and far > 0 and v > 0 and far != bound:
                    edge = hi if direction == "max" else lo
                    factor = max(1.0, abs(math.log(v / edge)) / abs(math.log(far / bound)))
                s = max(s, sig[name] * factor)
            else:
                s = max(s, max(sig.values()) if sig else 0.3)
            s = max(s, BEYOND_TABLE_SIGMA.get((name, spec.type), BEYOND_TABLE_SIGMA.get((name, None), 0.0)))
        return s, bool(oor)

    def predict_blocks(self, specs_or_keys: Iterable[BlockSpec | str]) -> np.ndarray:
        """Predicted latency (ms) of measured-type blocks (specs or table keys)."""
        fitted(self)
        specs = [parse_key(s) if isinstance(s, str) else s for s in specs_or_keys]
        out = np.zeros(len(specs))
        for t in {s.type for s in specs}:
            idx = [i for i, s in enumerate(specs) if s.type == t]
            if t not in self.regressors_:
                raise ValueError(f"block type={t!r}: not fitted; fitted: {', '.join(self.regressors_)}")
            out[idx] = self.regressors_[t].predict([specs[i] for i in idx])
        return out

    def beyond_tables(self, cfg: EdgeViTConfig) -> list[str]:
        """What of ``cfg`` lies beyond the fitted tables' grid (:func:`.grid.beyond_grid`: a LocalAgg
        kernel above the conv blocks' largest, an attention side above the attention blocks'
        largest), one phrase each; empty inside it or without those block types."""
        fitted(self)
        if "conv" not in self.regressors_ or "transattn" not in self.regressors_:
            return []
        from .grid import beyond_grid

        return beyond_grid(cfg, int(self.regressors_["conv"].ranges_["kernel"][1]),
                           int(self.regressors_["transattn"].ranges_["hw"][1]))

    def predict(self, cfgs: Sequence[EdgeViTConfig]) -> tuple[np.ndarray, np.ndarray]:
        """Predicted whole-network latency (ms) of each candidate and its standard deviation."""
        preds = self.predict_parts(cfgs)
        return np.array([p.total_ms for p in preds]), np.array([p.std_ms for p in preds])

    def predict_parts(self, cfgs: Sequence[EdgeViTConfig]) -> list[PhonePrediction]:
        """Per-part predictions with provenance. Batched: one regressor call per block type over all
        parts of all configurations."""
        fitted(self)
        cfgs = check_configs(cfgs)
        mapped = [map_candidate(c, self.mapping) for c in cfgs]
        flat = [(ci, p) for ci, parts in enumerate(mapped) for p in parts]
        queries = [p.spec for _, p in flat if p.spec is not None]
        block_ms = iter(self.predict_blocks(queries)) if queries else iter(())
        trans_idx = [k for k, (_, p) in enumerate(flat) if p.spec is None]
        trans_ms = self.rate_.predict_work([flat[k][1].work for k in trans_idx]) if trans_idx else np.zeros(0)
        trans_map = dict(zip(trans_idx, trans_ms))
        rate_sigma = self.transfer_sigma_
        v_sigma = self.sigma_.get("transattn", {}).get("v_scale_min", 0.0)
        results: list[list[PartPrediction]] = [[] for _ in cfgs]
        for k, (ci, p) in enumerate(flat):
            if p.spec is None:
                ms = float(max(trans_map[k], 0.0))
                sig, extrap = rate_sigma, False
            else:
                ms = float(next(block_ms)) * p.scale
                v_min = self.regressors_[p.spec.type].ranges_["v_scale"][0]
                if p.spec.type == "transattn" and p.spec.v_scale < v_min:
                    # v_scale = 1 is always one step below the grid: its error is the measured
                    # one-step error (v_scale_min split), added once; hw / C decide "extrapolated".
                    sig, extrap = self._sigma(replace(p.spec, v_scale=v_min))
                    sig = math.hypot(sig, v_sigma)
                else:
                    sig, extrap = self._sigma(p.spec)
                if p.provenance == "approximate":
                    sig = math.hypot(sig, APPROX_SIGMA)
                elif p.provenance == "direct":
                    sig = math.hypot(sig, DIRECT_SIGMA)
            results[ci].append(PartPrediction(p.half_block, ms, p.provenance, p.block_type, p.part, ms * sig, extrap,
                                              p.detail, p.ops))
        if self.weight_ms_per_mb > 0:
            for cfg, parts in zip(cfgs, results):
                mb = fp32_weight_mb(cfg)
                ms = float(self.weight_ms_per_mb * mb)
                parts.append(PartPrediction("network", ms, "network", "weights", "weight_traffic", ms * WEIGHT_SIGMA,
                                            False, f"{mb:.1f} MB of fp32 weights fetched per run at "
                                                   f"{self.weight_ms_per_mb:.3f} ms/MB (measured on the device)"))
        out = []
        for cfg, parts in zip(cfgs, results):
            total = float(sum(p.ms for p in parts))
            groups: dict[tuple[str, str], float] = {}
            for p in parts:
                groups[(p.block_type, p.provenance)] = groups.get((p.block_type, p.provenance), 0.0) + p.std_ms
            std = float(math.sqrt(sum(v * v for v in groups.values())))
            out.append(PhonePrediction(self.device_id, cfg.arch_id, total, std, tuple(parts)))
        return out

    def describe(self) -> str:
        kinds = ", ".join(f"{t} {r.kind_}" for t, r in self.regressors_.items())
        return (f"nn-Meter block regressors of {self.device_id} on {self.n_keys_} measured blocks ({kinds}), "
                "EdgeViT parts mapped direct / approximate / transferred")

    # -- persistence
    def _get_state(self) -> dict[str, Any]:
        return {"n_keys": self.n_keys_, "regressors": {t: r.to_dict() for t, r in self.regressors_.items()},
                "heldout": self.heldout_, "extrapolation": self.extrapolation_, "sigma": self.sigma_,
                "rate": self.rate_.to_dict(), "rate_heldout": self.rate_heldout_,
                "transfer_sigma": self.transfer_sigma_}

    def _set_state(self, d: Mapping[str, Any]) -> None:
        self.n_keys_ = int(state_number(d, "n_keys", 1, 1e8))
        regs = d["regressors"]
        if not isinstance(regs, dict) or not regs or not set(regs) <= set(BLOCK_TYPES):
            raise ModelFileError(f"regressors: expected a JSON object keyed by block types ({', '.join(BLOCK_TYPES)})")
        self.regressors_ = {t: BlockRegressor.from_dict(r) for t, r in regs.items()}
        self.heldout_, self.extrapolation_ = dict(d["heldout"]), dict(d["extrapolation"])
        self.sigma_ = {}
        for t, v in dict(d["sigma"]).items():
            self.sigma_[t] = {k: state_number(v, k, 0.0, 1e3) for k in v}
        for t, e in self.extrapolation_.items():
            for name, rec in e.items():
                for k in ("train_bound", "far"):
                    state_number(rec, k, 0.0, 1e9)
        self.rate_ = RateModel.from_dict(d["rate"])
        self.rate_heldout_ = dict(d["rate_heldout"])
        self.transfer_sigma_ = state_number(d, "transfer_sigma", 0.0, 1e3)
        w = self.weight_ms_per_mb
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= 1e3:
            raise ModelFileError(f"params.weight_ms_per_mb={w!r}: expected a number in [0, 1000] (ms per MB)")


def fp32_weight_mb(cfg: EdgeViTConfig) -> float:
    """MB (10^6 bytes) of a candidate's fp32 weights: what its weight-traffic part is priced on."""
    from search_space import cost

    return cost(cfg).params * 4 / 1e6


# ----------------------------------------------------------------------------------------- entry points
def table_blocks(device_id: str) -> tuple[list[str], list[float]]:
    """The keys and latencies (ms) of a phone's shipped block table, ready for ``fit``."""
    table = load_table(device_id)
    keys = [k for k in table if k not in IGNORED_KEYS]
    return keys, [table[k] for k in keys]


def fit_phone(device_id: str, **params: Any) -> PhoneLatencyPredictor:
    """A phone's block model fitted on its shipped nn-Meter table (about half a minute on 2 cores)."""
    return PhoneLatencyPredictor(device_id, **params).fit(*table_blocks(device_id))


@functools.lru_cache(maxsize=None)
def _fitted(device_id: str, cache_dir: str | None) -> PhoneLatencyPredictor:
    # The fit version in the name: a cache of older fitting code (another default mapping) is not reused.
    path = Path(cache_dir) / f"phone_{device_id}_fit{FIT_VERSION}.json" if cache_dir else None
    if path is not None and path.is_file():
        try:
            return PhoneLatencyPredictor.from_dict(read_json(path, what="phone model"))
        except (ModelFileError, FileFormatError):
            pass  # an older or broken cache: fit again and replace it
    pred = fit_phone(device_id)
    if path is not None:
        write_json(path, pred.to_dict())
    return pred


def predict_phone_latency(cfg: EdgeViTConfig, device_id: str = "s21", cache_dir: str | None = None) -> PhonePrediction:
    """Predicted latency of ``cfg`` on a phone (``s21``, ``pixel4``, ``pixel1``), per half-block with provenance.

    The first call per device fits its predictor (seconds); ``cache_dir`` keeps the fitted
    predictor as JSON (a cache from another version is refitted).
    """
    check_device(device_id)
    return _fitted(device_id, cache_dir).predict_parts([cfg])[0]


def predict_phone_latency_batch(cfgs: Sequence[EdgeViTConfig], device_id: str = "s21",
                                cache_dir: str | None = None) -> list[PhonePrediction]:
    check_device(device_id)
    return _fitted(device_id, cache_dir).predict_parts(list(cfgs))
