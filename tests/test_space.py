"""The search space: sampling (random and through Optuna), membership, size, and the analytic cost
agreeing with what torch counts on 48 of 200 random candidates, chosen to hold every value each stage
takes among the 200."""
import dataclasses
import json

import optuna
import pytest
import torch

from search_space import DEFAULT_SPACE, PRESETS, EdgeViTConfig, SearchSpace, build_model, cost

from conftest import counted_macs

N_RANDOM = 200
RANDOM = DEFAULT_SPACE.sample_random(N_RANDOM, seed=2026)
N_BUILT = 48


def stage_values(cfg: EdgeViTConfig) -> set[tuple]:
    """What the analytic cost branches on: each stage's width, depth, block kinds, MLP ratio, head size,
    sampling ratio and kernel, and the resolution."""
    out: set[tuple] = {("resolution", cfg.resolution)}
    for i, s in enumerate(cfg.stages):
        out |= {(i, "width", s.width), (i, "depth", s.depth), (i, "mlp", s.mlp_ratio), (i, "head_dim", s.head_dim),
                (i, "sr", s.sr_ratio), (i, "kernel", s.kernel_size)} | {(i, "kind", k) for k in s.blocks}
    return out


def covering(cfgs: list[EdgeViTConfig], n: int) -> list[EdgeViTConfig]:
    """A greedy cover of every stage value among ``cfgs``, then the first others up to ``n``: building,
    counting and running a network costs ~0.4 s, and 200 of them were a tenth of the suite's time."""
    want, seen, chosen = set().union(*map(stage_values, cfgs)), set(), []
    while seen != want:
        best = max((c for c in cfgs if c not in chosen), key=lambda c: len(stage_values(c) - seen))
        chosen.append(best)
        seen |= stage_values(best)
    return chosen + [c for c in cfgs if c not in chosen][:max(0, n - len(chosen))]


BUILT = covering(RANDOM, N_BUILT)


def test_random_sampling_is_deterministic_for_a_seed():
    a = [c.arch_id for c in DEFAULT_SPACE.sample_random(20, seed=7)]
    b = [c.arch_id for c in DEFAULT_SPACE.sample_random(20, seed=7)]
    c = [c.arch_id for c in DEFAULT_SPACE.sample_random(20, seed=8)]
    assert a == b and a != c
    assert len(set(a)) == 20  # the space is large enough that 20 draws do not collide


def test_random_samples_cover_the_ranges():
    assert {c.resolution for c in RANDOM} == set(DEFAULT_SPACE.resolutions)
    kinds = {k for c in RANDOM for s in c.stages for k in s.blocks}
    assert kinds == {"lgl", "local", "global"}
    assert {s.kernel_size for c in RANDOM for s in c.stages} - {None} == set(DEFAULT_SPACE.kernel_sizes)
    assert {s.sr_ratio for c in RANDOM for s in c.stages} - {None} == set(DEFAULT_SPACE.sr_ratios)
    for i, (lo, hi) in enumerate(DEFAULT_SPACE.depths):
        assert {c.stages[i].depth for c in RANDOM} == set(range(lo, hi + 1))


def test_the_built_candidates_hold_every_stage_value_of_the_200():
    assert len(BUILT) == N_BUILT == len({c.arch_id for c in BUILT})
    assert set().union(*map(stage_values, BUILT)) == set().union(*map(stage_values, RANDOM))


@pytest.mark.parametrize("idx", range(N_BUILT))
def test_random_candidate_builds_runs_and_matches_analytic_cost(idx):
    cfg = BUILT[idx]
    DEFAULT_SPACE.check(cfg)
    assert EdgeViTConfig.from_json(cfg.to_json()).arch_id == cfg.arch_id
    model = build_model(cfg).eval()
    c = cost(cfg)
    assert sum(p.numel() for p in model.parameters()) == c.params
    # Forward at the candidate's own resolution, attention unfused so torch counts its matmuls.
    assert counted_macs(model, cfg.resolution) == c.macs
    with torch.no_grad():
        out = model(torch.randn(1, 3, cfg.resolution, cfg.resolution))
    assert out.shape == (1, cfg.num_classes) and torch.isfinite(out).all()


def test_training_step_with_drop_path_runs_backward():
    torch.manual_seed(0)
    cfg = RANDOM[0].replace(num_classes=4)
    model = build_model(cfg, drop_path_rate=0.1).train()
    out = model(torch.randn(2, 3, cfg.resolution, cfg.resolution))
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("sampler", [optuna.samplers.TPESampler(seed=0), optuna.samplers.NSGAIISampler(seed=0),
                                     optuna.samplers.RandomSampler(seed=0)], ids=["tpe", "nsga2", "random"])
def test_optuna_trials_drive_sampling_and_always_give_valid_configs(sampler):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = ["maximize", "minimize"] if isinstance(sampler, optuna.samplers.NSGAIISampler) else ["minimize"]
    study = optuna.create_study(directions=directions, sampler=sampler)
    ids = []
    for _ in range(30):
        trial = study.ask()
        cfg = DEFAULT_SPACE.sample(trial)
        DEFAULT_SPACE.check(cfg)
        ids.append(cfg.arch_id)
        c = cost(cfg)
        study.tell(trial, [c.params, c.macs][: len(directions)])
    assert len(set(ids)) > 20


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_lie_in_the_default_space_and_replay_through_fixed_trials(name):
    cfg = PRESETS[name]
    assert DEFAULT_SPACE.contains(cfg)
    params = DEFAULT_SPACE.params_of(cfg)
    assert DEFAULT_SPACE.sample(optuna.trial.FixedTrial(params)) == cfg


def test_params_of_round_trips_random_candidates():
    for cfg in RANDOM[:50]:
        assert DEFAULT_SPACE.sample(optuna.trial.FixedTrial(DEFAULT_SPACE.params_of(cfg))) == cfg


def test_size_formula_equals_brute_force_enumeration():
    # Stages are drawn independently given the resolution, so the number of distinct architectures
    # is a sum over resolutions of a product over stages of distinct stage forms. Enumerate every
    # branch of one stage's define-by-run choices (others held at their first choice) and count
    # distinct canonical stages: this checks the de-duplication (irrelevant fields) in size().
    tiny = SearchSpace(resolutions=(64, 96), depths=((1, 3), (1, 2), (1, 2), (1, 1)), heads=((1, 2),) * 4,
                       head_dims=(16, 32), mlp_ratios=(2, 4), sr_ratios=(1, 2, 4), kernel_sizes=(3, 5))

    class Enumerate:
        def __init__(self, prefix, path):
            self.prefix, self.path, self.pos, self.branching = prefix, path, 0, []

        def _pick(self, name, n):
            if not name.startswith(self.prefix):
                return 0
            i = self.path[self.pos] if self.pos < len(self.path) else 0
            self.branching.append(n)
            self.pos += 1
            return i

        def suggest_int(self, name, low, high):
            return low + self._pick(name, high - low + 1)

        def suggest_categorical(self, name, choices):
            return choices[self._pick(name, len(choices))]

    total = 0
    for res in tiny.resolutions:
        sub = dataclasses.replace(tiny, resolutions=(res,))
        product = 1
        for i in range(4):
            forms, stack = set(), [[]]
            while stack:
                path = stack.pop()
                e = Enumerate(f"s{i + 1}.", path)
                forms.add(json.dumps(sub.sample(e).stages[i].to_dict(), sort_keys=True))
                for pos in range(len(path), len(e.branching)):
                    for alt in range(1, e.branching[pos]):
                        stack.append(path + [0] * (pos - len(path)) + [alt])
            product *= len(forms)
        total += product
    assert tiny.size() == total


def test_default_space_is_reported_and_large():
    d = DEFAULT_SPACE.describe()
    assert d["size"] == DEFAULT_SPACE.size() > 10**15
    assert 36 in d["widths"][0] and 48 in d["widths"][0] and 240 in d["widths"][2] and 288 in d["widths"][3]
