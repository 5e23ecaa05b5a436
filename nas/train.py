"""Full training of a candidate with the recipe the EdgeViT authors released (issue #7).

The winners of a search go to full training here; a short variant (:func:`short_train`) gives the
low-fidelity accuracies a search can rank candidates with. Everything is timm's: transforms and
RandAugment, Mixup/CutMix, the losses, the optimizer factory, the cosine scheduler, the weight EMA and
``accuracy``; this module only wires them together the way the released ``main.py`` did, and adds
what a long run needs: an atomic checkpoint every epoch, an exact resume, JSON-lines metrics, the final
weights (safetensors), the ONNX export, and a :class:`~predictors.accuracy.results.ResultRecord` appended to
``runs/results.jsonl`` for the accuracy predictor.

Two calls, so that a mistake costs nothing: :func:`prepare` reads and checks everything (data folder,
class count, resolution, an existing checkpoint) and writes nothing; :func:`run` trains. :func:`train`
does both. Launched under ``torchrun`` (``WORLD_SIZE`` > 1) the same code trains with DDP, one process
per GPU (NCCL) or per CPU process (Gloo); only rank 0 writes files.

Exact resume: the data order, the augmentations, Mixup and drop path draw from generators seeded at
the start of each epoch from (seed, epoch, rank), and the checkpoint holds every other piece of state
(model, EMA, optimizer, scheduler, scaler, counters, RNG states). On the CPU an interrupted run resumed
from its checkpoint ends with the same weights, bit for bit, as an uninterrupted one; on a GPU, cuDNN's
non-deterministic kernels make the two runs equal in distribution only.

Why one module of ~1,000 lines: like timm's own ``train.py``, it is one training loop read top to
bottom (recipe, processes, data, checkpoint, plan, state, loop, outputs, each a section below), and
exact resume depends on every section agreeing on the same seeds and state; split, the invariants
would span files.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from predictors.accuracy.results import DEFAULT_RESULTS, ResultRecord, append_result
from search_space import EdgeViTConfig, build_model
from search_space.config import ConfigError
from search_space.files import atomic_write

from .common import CommandError
from .recipe import RECIPE_SOURCE, RUNTIME_FIELDS, TrainConfig

__all__ = [
    "RECIPE_SOURCE",
    "TrainConfig",
    "LoadedData",
    "TrainPlan",
    "StepInfo",
    "TrainState",
    "DistEnv",
    "load_data",
    "prepare",
    "run",
    "train",
    "short_train",
    "build_state",
    "train_step",
    "evaluate",
    "read_checkpoint",
    "shutdown_distributed",
    "iter_metrics",
    "default_out_dir",
]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "edgevit-nas/train-checkpoint/1"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
RESULT = "result.json"


# ---------------------------------------------------------------------------------------- processes
@dataclass(frozen=True)
class DistEnv:
    """Which process this is, as torchrun says through the environment (a single process otherwise)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "DistEnv":
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if torch.cuda.is_available() else torch.device("cpu")


def _init_distributed(env: DistEnv) -> None:
    """Join the process group once per process (NCCL on GPUs, Gloo on CPUs); later trainings in the
    same process (``--pick pareto``) reuse it."""
    if env.world <= 1 or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def shutdown_distributed() -> None:
    """Leave the process group :func:`run` joined under torchrun (the CLI calls this when done)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _all_sum(t: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.world > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


# ---------------------------------------------------------------------------------------- data
@dataclass
class LoadedData:
    """The two splits, checked, with the class count the data set implies."""

    name: str
    root: str
    train: Dataset
    val: Dataset
    num_classes: int
    classes: list[str] | None = None

    @property
    def num_train(self) -> int:
        return len(self.train)

    @property
    def num_val(self) -> int:
        return len(self.val)


def _img_extensions() -> tuple[str, ...]:
    from timm.data.readers.img_extensions import get_img_extensions

    return tuple(sorted(get_img_extensions(as_set=True)))


def _expected(root: Path, train: str, val: str) -> str:
    return f"expected {root}/{train}/<class>/<image> and {root}/{val}/<class>/<image>"


def _scan_split(root: Path, split: str, train: str, val: str):
    """timm's folder reader over ``root/split``, refused when it holds no class folders of images."""
    from timm.data.readers.reader_image_folder import ReaderImageFolder

    d = root / split
    if not d.is_dir():
        raise CommandError(f"--data {root}: no {split}/ subfolder; {_expected(root, train, val)}")
    try:
        reader = ReaderImageFolder(str(d))
    except RuntimeError:  # timm: "Found 0 images in subfolders of ..."
        reader = None
    if reader is None or not reader.samples:
        exts = ", ".join(_img_extensions())
        raise CommandError(f"--data {d}: no images found; expected one subfolder per class holding image files ({exts})")
    if "" in reader.class_to_idx:
        raise CommandError(f"--data {d}: images lie directly in {split}/; put them in one subfolder per class")
    return reader


def _class_mismatch(root: Path, train_classes: list[str], val_classes: list[str], val: str) -> str | None:
    missing = sorted(set(train_classes) - set(val_classes))
    extra = sorted(set(val_classes) - set(train_classes))
    if not missing and not extra:
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} train classes have no {val} images (e.g. {missing[0]!r})")
    if extra:
        parts.append(f"{len(extra)} {val} classes are not in train (e.g. {extra[0]!r})")
    return f"--data {root}: train/ and {val}/ hold different classes: " + "; ".join(parts)


def _load_folder(root: Path, train: str, val: str) -> LoadedData:
    from timm.data import ImageDataset

    if not root.exists():
        raise CommandError(f"--data {root}: no such folder; {_expected(root, train, val)} "
                           "(or name a timm data set with --dataset)")
    if not root.is_dir():
        raise CommandError(f"--data {root}: is a file, not a folder; {_expected(root, train, val)}")
    tr = _scan_split(root, train, train, val)
    va = _scan_split(root, val, train, val)
    classes = list(tr.class_to_idx)
    msg = _class_mismatch(root, classes, list(va.class_to_idx), val)
    if msg:
        raise CommandError(msg)
    if len(classes) < 2:
        raise CommandError(f"--data {root}: {len(classes)} class; a classifier needs at least 2 class folders")
    # Equal class sets sort into equal class -> index maps (timm sorts by natural key), so the val
    # reader's labels already agree with train's.
    return LoadedData(root.resolve().name, str(root), ImageDataset(str(root / train), reader=tr),
                      ImageDataset(str(root / val), reader=va), len(classes), classes)


def _classes_of(ds: Any) -> list[str] | None:
    reader = getattr(ds, "reader", None)
    for obj in (ds, reader):
        c2i = getattr(obj, "class_to_idx", None)
        if c2i:
            return [c for c, _ in sorted(c2i.items(), key=lambda kv: kv[1])]
        classes = getattr(obj, "classes", None)
        if classes:
            return list(classes)
    return None


def _load_timm(name: str, root: Path, train: str, val: str, download: bool) -> LoadedData:
    from timm.data import create_dataset

    prefix = name.split("/", 1)[0].lower() if "/" in name else ""
    if prefix in ("tfds", "wds", "hfids"):
        raise CommandError(f"--dataset {name}: a streaming (iterable) data set; nas train needs a map-style one "
                           "(an ImageFolder tree, torch/<name> or hfds/<name>)")
    splits = []
    for split in (train, val):
        try:
            splits.append(create_dataset(name, root=str(root), split=split, is_training=split == train,
                                         download=download))
        except Exception as e:  # timm raises AssertionError, RuntimeError, ValueError... per backend
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise CommandError(f"--dataset {name} --data {root}: timm cannot open split {split!r} ({first})") from None
    classes = _classes_of(splits[0])
    if classes is None:
        raise CommandError(f"--dataset {name}: cannot tell how many classes it has; pass --num-classes")
    return LoadedData(name, str(root), splits[0], splits[1], len(classes), classes)


def _subset(ds: Dataset, n: int | None, seed: int) -> Dataset:
    """A fixed, seeded random subset of ``n`` items (the same one in every epoch and on resume)."""
    if n is None or n >= len(ds):
        return ds
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds), generator=g)[:n].sort().values.tolist()
    return Subset(ds, idx)


def load_data(data: str | os.PathLike, dataset: str = "", train_split: str = "train", val_split: str = "val",
              download: bool = False) -> LoadedData:
    """Open ``data``: an ImageFolder tree (``data/train/<class>/*``, ``data/val/<class>/*``) or, with
    ``dataset`` (``torch/cifar10``, ``hfds/...``), any map-style data set timm reads, rooted at ``data``.
    Raises :class:`CommandError` (one line naming the path and what is expected) on anything else."""
    root = Path(data)
    if dataset:
        return _load_timm(dataset, root, train_split, val_split, download)
    return _load_folder(root, train_split, val_split)


def _posterize_keep_zero_bits(img: Any, bits_to_keep: int, **_: Any) -> Any:
    """timm's RandAugment posterize, with the 0-bit case Pillow 13 refuses done as older Pillow did
    (every channel masked to 0, a black image); a picklable module function for loader workers."""
    from PIL import Image, ImageOps

    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


def _patch_posterize() -> None:
    """``rand-m9-mstd0.5-inc1`` draws magnitude 10 now and then, where timm's ``PosterizeIncreasing``
    asks Pillow for 0 bits; Pillow >= 13 raises on that and would end the epoch. Route timm's
    posterize ops through :func:`_posterize_keep_zero_bits` (only where Pillow refuses 0 bits)."""
    from PIL import Image, ImageOps
    from timm.data import auto_augment

    try:
        ImageOps.posterize(Image.new("RGB", (1, 1)), 0)
        return
    except ValueError:
        pass
    for name, fn in list(auto_augment.NAME_TO_OP.items()):
        if fn is auto_augment.posterize:
            auto_augment.NAME_TO_OP[name] = _posterize_keep_zero_bits


def _transforms(tc: TrainConfig, resolution: int):
    """timm's train and eval transforms with the recipe's settings (RandAugment, bicubic, erasing)."""
    from timm.data import create_transform

    _patch_posterize()
    try:
        train = create_transform(resolution, is_training=True, scale=(tc.scale_min, 1.0), color_jitter=tc.color_jitter,
                                 auto_augment=tc.aa, interpolation=tc.train_interpolation, re_prob=tc.reprob,
                                 re_mode=tc.remode, re_count=1)
    except Exception as e:  # timm's augmentation-string parser raises assertions / KeyErrors
        raise ConfigError("aa", tc.aa, f"not an augmentation timm knows ({type(e).__name__}: {e}); "
                          "e.g. rand-m9-mstd0.5-inc1, augmix-m5-w4-d2, or none") from None
    val = create_transform(resolution, is_training=False, interpolation="bicubic", crop_pct=tc.crop_pct)
    return train, val


def _set_transform(ds: Dataset, tf: Callable) -> None:
    base = ds.dataset if isinstance(ds, Subset) else ds
    base.transform = tf


# ---------------------------------------------------------------------------------------- checkpoint
def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint this project wrote, with ``weights_only=True`` (tensors and plain containers
    only: a file from elsewhere cannot run code while loading). One-line error otherwise."""
    path = Path(path)
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol notice; the refusal below says it all
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError (not a zip), EOFError (truncated)...
        raise CommandError(f"{path}: not a checkpoint nas train wrote (torch.load(weights_only=True) refused it: "
                           f"{type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CommandError(f"{path}: not a checkpoint written by nas train (no format {CHECKPOINT_FORMAT!r})")
    return ckpt


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        # numpy arrays are not weights_only-safe; the key array travels as a tensor.
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": version, "state": list(internal), "gauss": gauss},
    }


def _set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    n = s["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = s["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def _recipe_difference(saved: dict[str, Any], tc: TrainConfig) -> str | None:
    now = tc.to_dict()
    for k, v in now.items():
        if k in RUNTIME_FIELDS or saved.get(k, v) == v:
            continue
        return f"{k}={saved[k]!r} there, {k}={v!r} now"
    return None


def _check_checkpoint(path: Path, net_cfg: EdgeViTConfig, tc: TrainConfig, resume: bool) -> dict[str, Any] | None:
    """The checkpoint to resume from, or None to start afresh; refuses (touching nothing) a checkpoint
    that would be overwritten without ``resume``, or that belongs to another architecture or recipe."""
    if not path.exists():
        return None
    if not resume:
        raise CommandError(f"{path} exists; pass --resume to continue it, or --out another folder")
    ckpt = read_checkpoint(path)
    if ckpt.get("arch_id") != net_cfg.arch_id:
        raise CommandError(f"{path}: checkpoint of architecture {ckpt.get('arch_id')}, not {net_cfg.arch_id} "
                           f"({net_cfg.name or 'this candidate'} at {net_cfg.resolution}px, {net_cfg.num_classes} "
                           "classes); use another --out")
    diff = _recipe_difference(ckpt.get("train_config", {}), tc)
    if diff:
        raise CommandError(f"{path}: written with another recipe ({diff}); resume with the same settings "
                           "or use another --out")
    return ckpt


# ---------------------------------------------------------------------------------------- plan
@dataclass
class TrainPlan:
    """Everything :func:`run` needs, checked; made by :func:`prepare`, which writes nothing."""

    cfg: EdgeViTConfig
    net_cfg: EdgeViTConfig
    data: LoadedData
    out_dir: Path
    tc: TrainConfig
    env: DistEnv
    checkpoint: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    #: timm's train and eval transforms at the network's resolution; set on the data when the run starts
    #: (plans of several candidates may share one data set at different resolutions).
    transforms: tuple[Callable, Callable] | None = None

    @property
    def start_epoch(self) -> int:
        return int(self.checkpoint["epoch"]) if self.checkpoint else 0

    @property
    def finished(self) -> bool:
        """The checkpoint is at the last epoch and the outputs were written: nothing left to do."""
        return self.start_epoch >= self.tc.epochs and (self.out_dir / RESULT).is_file()

    @property
    def global_batch(self) -> int:
        return self.tc.batch_size * self.env.world

    @property
    def lr(self) -> float:
        return self.tc.lr_for(self.env.world)


def default_out_dir(net_cfg: EdgeViTConfig, dataset: str, fidelity: str = "full") -> Path:
    safe = dataset.replace("/", "-").replace(os.sep, "-") or "data"
    return Path("runs") / ("train" if fidelity == "full" else "short") / f"{net_cfg.arch_id}-{safe}"


def _net_config(cfg: EdgeViTConfig, data: LoadedData, tc: TrainConfig, num_classes: int | None,
                notes: list[str]) -> EdgeViTConfig:
    """The network actually trained: the candidate with the data set's class count and the recipe's
    resolution. An explicit ``num_classes`` that disagrees with the data is an error, not a guess."""
    if num_classes is not None and num_classes != data.num_classes:
        raise CommandError(f"--num-classes {num_classes}: the data set {data.name!r} has {data.num_classes} classes")
    changes: dict[str, Any] = {}
    if cfg.num_classes != data.num_classes:
        changes["num_classes"] = data.num_classes
        notes.append(f"the configuration has {cfg.num_classes} classes; training with the data set's "
                     f"{data.num_classes} ({data.name})")
    if tc.resolution is not None and tc.resolution != cfg.resolution:
        changes["resolution"] = tc.resolution
        notes.append(f"training at {tc.resolution}x{tc.resolution}, not the configuration's {cfg.resolution}")
    return cfg.replace(**changes) if changes else cfg


def prepare(cfg: EdgeViTConfig, data: str | os.PathLike | LoadedData, out_dir: str | os.PathLike | None = None,
            train_config: TrainConfig | None = None, resume: bool = False, num_classes: int | None = None,
            dataset: str = "", download: bool = False) -> TrainPlan:
    """Check everything a training needs and write nothing: the data, the class count, the resolution,
    the batch against the data set size, and any checkpoint already in ``out_dir``. What it adapted
    (class count, resolution) is said in ``plan.notes`` for the caller to show."""
    tc = train_config or TrainConfig()
    env = DistEnv.from_env()
    loaded = data if isinstance(data, LoadedData) else load_data(data, dataset, download=download)
    notes: list[str] = []
    net_cfg = _net_config(cfg, loaded, tc, num_classes, notes)
    train_tf, val_tf = _transforms(tc, net_cfg.resolution)
    loaded = dataclasses.replace(loaded, train=_subset(loaded.train, tc.max_train_images, tc.seed),
                                 val=_subset(loaded.val, tc.max_val_images, tc.seed + 1))
    per_process = loaded.num_train // env.world
    if per_process < tc.batch_size:
        raise CommandError(f"--batch-size {tc.batch_size}: the training set has {loaded.num_train} images, "
                           f"{per_process} per process, fewer than one batch; lower --batch-size")
    if tc.warmup_epochs >= tc.epochs:
        notes.append(f"warm-up ({tc.warmup_epochs} epochs) is not shorter than the run ({tc.epochs} epochs); "
                     "the cosine decay never starts")
    out = Path(out_dir) if out_dir is not None else default_out_dir(net_cfg, loaded.name, tc.fidelity)
    ckpt = _check_checkpoint(out / CHECKPOINT, net_cfg, tc, resume)
    if resume and ckpt is None:
        notes.append(f"--resume: no checkpoint in {out} yet; starting at epoch 1")
    if ckpt is not None and int(ckpt.get("world_size", env.world)) != env.world:
        notes.append(f"the checkpoint was written by {ckpt['world_size']} processes, this run has {env.world}: "
                     "the data order differs from here on")
    return TrainPlan(cfg, net_cfg, loaded, out, tc, env, ckpt, notes, (train_tf, val_tf))


# ---------------------------------------------------------------------------------------- state
@dataclass
class TrainState:
    """The objects one training step touches (built by :func:`build_state`; the bench uses it too)."""

    model: nn.Module
    ddp: nn.Module
    ema: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    mixup: Any
    criterion: nn.Module
    device: torch.device
    amp_dtype: torch.dtype | None
    clip_grad: float | None
    sched_on_updates: bool
    num_updates: int = 0

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)


def _amp_dtype(tc: TrainConfig, device: torch.device) -> torch.dtype | None:
    if not tc.amp or device.type != "cuda":
        return None
    if tc.amp_dtype == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return getattr(torch, tc.amp_dtype)


def _criterion(tc: TrainConfig) -> nn.Module:
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if tc.mixup_active:
        return SoftTargetCrossEntropy()  # Mixup already smooths the targets
    if tc.smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=tc.smoothing)
    return nn.CrossEntropyLoss()


def build_state(net_cfg: EdgeViTConfig, tc: TrainConfig, updates_per_epoch: int, env: DistEnv | None = None,
                lr: float | None = None) -> TrainState:
    """Model, EMA, DDP wrapper, optimizer, scheduler, scaler, Mixup and loss, as the recipe builds them."""
    from timm.data import Mixup
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    from timm.utils import ModelEmaV3

    env = env or DistEnv()
    device = env.device
    torch.manual_seed(tc.seed)  # identical initial weights on every rank and on every rerun
    model = build_model(net_cfg, drop_path_rate=tc.drop_path).to(device)
    # The EMA copies the unwrapped model before DDP wraps it (as timm and DeiT do).
    ema = ModelEmaV3(model, decay=tc.model_ema_decay) if tc.model_ema else None
    ddp = model
    if env.world > 1:
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=[env.local_rank] if device.type == "cuda" else None)
    lr = tc.lr_for(env.world) if lr is None else lr
    optimizer = create_optimizer_v2(model, opt=tc.opt, lr=lr, weight_decay=tc.weight_decay, eps=tc.opt_eps)
    scheduler, _ = create_scheduler_v2(optimizer, sched=tc.sched, num_epochs=tc.epochs, warmup_epochs=tc.warmup_epochs,
                                       warmup_lr=tc.warmup_lr, min_lr=tc.min_lr, step_on_epochs=not tc.sched_on_updates,
                                       updates_per_epoch=updates_per_epoch)
    amp_dtype = _amp_dtype(tc, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    mixup = None
    if tc.mixup_active:
        mixup = Mixup(mixup_alpha=tc.mixup, cutmix_alpha=tc.cutmix, prob=tc.mixup_prob, switch_prob=tc.mixup_switch_prob,
                      mode="batch", label_smoothing=tc.smoothing, num_classes=net_cfg.num_classes)
    return TrainState(model, ddp, ema, optimizer, scheduler, scaler, mixup, _criterion(tc), device, amp_dtype,
                      tc.clip_grad, tc.sched_on_updates)


def train_step(state: TrainState, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One optimizer update on a batch: Mixup/CutMix, forward under autocast, scaled backward,
    optional clipping, step, EMA update, per-update schedule. Returns the (detached) loss."""
    x = x.to(state.device, non_blocking=True)
    y = y.to(state.device, non_blocking=True)
    if state.mixup is not None:
        x, y = state.mixup(x, y)
    with state.autocast():
        loss = state.criterion(state.ddp(x), y)
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    if state.clip_grad is not None:
        state.scaler.unscale_(state.optimizer)
        nn.utils.clip_grad_norm_(state.model.parameters(), state.clip_grad)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    if state.ema is not None:
        state.ema.update(state.model)
    state.num_updates += 1
    if state.sched_on_updates:
        state.scheduler.step_update(num_updates=state.num_updates)
    return loss.detach()


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, env: DistEnv | None = None,
             amp_dtype: torch.dtype | None = None) -> dict[str, float]:
    """Top-1, top-5 (top-k with k = min(5, classes)) and loss over the loader, summed over processes."""
    from timm.utils import accuracy

    env = env or DistEnv()
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss sum, top-1 hits, top-5 hits, images
    ctx = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with ctx:
            out = model(x)
        out = out.float()
        top1, top5 = accuracy(out, y, topk=(1, 5))
        n = y.shape[0]
        sums += torch.stack([nn.functional.cross_entropy(out, y, reduction="sum").double(),
                             (top1 * n / 100).round().double(), (top5 * n / 100).round().double(),
                             torch.tensor(float(n), device=device, dtype=torch.float64)])
    loss, c1, c5, n = _all_sum(sums, env).tolist()
    return {"loss": loss / max(n, 1), "top1": 100 * c1 / max(n, 1), "top5": 100 * c5 / max(n, 1)}


# ---------------------------------------------------------------------------------------- loop
@dataclass(frozen=True)
class StepInfo:
    """Progress of the running epoch (for bars): images per second over the epoch so far, all processes."""

    epoch: int
    epochs: int
    step: int
    steps: int
    images_per_s: float


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def _seed_epoch(seed: int, epoch: int, rank: int, loader_gen: torch.Generator) -> None:
    """Seed every generator the epoch draws from: torch (drop path, erasing, crops in the main
    process), numpy (Mixup), Python (RandAugment) and the loader's (worker seeds). This is what
    makes a resumed epoch draw exactly what the uninterrupted one drew, with any number of workers."""
    s = _epoch_seed(seed, epoch, rank)
    torch.manual_seed(s)
    np.random.seed(s)
    random.seed(s)
    loader_gen.manual_seed(s)


def _workers(tc: TrainConfig, env: DistEnv) -> int:
    if tc.workers is not None:
        return tc.workers
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", env.world if env.world > 1 else 1))
    return min(8, max(1, (os.cpu_count() or 1) // per_node))


def _train_sampler(plan: TrainPlan) -> Any:
    """DistributedSampler, also for one process: its order is a function of (seed, epoch) alone. With
    repeated augmentation, timm's RepeatAugSampler (whose order is a function of the epoch alone)."""
    tc, env = plan.tc, plan.env
    if tc.repeated_aug > 0:
        from timm.data.distributed_sampler import RepeatAugSampler

        return RepeatAugSampler(plan.data.train, num_replicas=env.world, rank=env.rank, shuffle=True,
                                num_repeats=tc.repeated_aug)
    return DistributedSampler(plan.data.train, num_replicas=env.world, rank=env.rank, shuffle=True, seed=tc.seed)


def _loaders(plan: TrainPlan) -> tuple[DataLoader, DataLoader, Any, torch.Generator]:
    tc, env = plan.tc, plan.env
    workers = _workers(tc, env)
    pin = env.device.type == "cuda"
    sampler = _train_sampler(plan)
    gen = torch.Generator()
    train = DataLoader(plan.data.train, batch_size=tc.batch_size, sampler=sampler, num_workers=workers,
                       pin_memory=pin, drop_last=True, generator=gen, persistent_workers=False)
    val_idx = list(range(env.rank, plan.data.num_val, env.world))  # disjoint shards, no padding duplicates
    val_ds = plan.data.val if env.world == 1 else Subset(plan.data.val, val_idx)
    val = DataLoader(val_ds, batch_size=tc.batch_size, shuffle=False, num_workers=workers, pin_memory=pin)
    return train, val, sampler, gen


def _train_epoch(state: TrainState, loader: DataLoader, epoch: int, epochs: int, env: DistEnv,
                 on_step: Callable[[StepInfo], None] | None) -> tuple[float, int, float]:
    state.ddp.train()
    steps = len(loader)
    loss_sum = torch.zeros((), dtype=torch.float64, device=state.device)
    per_step = loader.batch_size * env.world
    t0 = time.perf_counter()
    for i, (x, y) in enumerate(loader):
        loss_sum += train_step(state, x, y).double()
        if on_step is not None:
            on_step(StepInfo(epoch + 1, epochs, i + 1, steps, per_step * (i + 1) / (time.perf_counter() - t0)))
    if state.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    mean_loss = float(_all_sum(loss_sum, env).item()) / (steps * env.world)
    if not math.isfinite(mean_loss):
        raise CommandError(f"epoch {epoch + 1}: the training loss is {mean_loss}; lower --lr "
                           "(the last checkpoint is intact)")
    return mean_loss, steps * per_step, seconds


def _sync_buffers(model: nn.Module, env: DistEnv) -> None:
    """BatchNorm statistics from rank 0 everywhere, so every shard evaluates the same network."""
    if env.world > 1:
        for b in model.buffers():
            dist.broadcast(b, 0)


def _checkpoint(plan: TrainPlan, state: TrainState, epoch: int, row: dict[str, Any], totals: dict[str, float]) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "arch_id": plan.net_cfg.arch_id,
        "candidate_arch_id": plan.cfg.arch_id,
        "config": plan.net_cfg.to_dict(),
        "candidate_config": plan.cfg.to_dict(),
        "train_config": plan.tc.to_dict(),
        "dataset": plan.data.name,
        "epoch": epoch,
        "num_updates": state.num_updates,
        "world_size": plan.env.world,
        "model": state.model.state_dict(),
        "ema": state.ema.module.state_dict() if state.ema is not None else None,
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "scaler": state.scaler.state_dict(),
        "rng": _rng_state(),
        "sampler": {"seed": plan.tc.seed, "epoch": epoch},
        "metrics": row,
        "totals": totals,
    }


def _restore(state: TrainState, ckpt: dict[str, Any]) -> None:
    state.model.load_state_dict(ckpt["model"])
    if state.ema is not None:
        state.ema.module.load_state_dict(ckpt["ema"])
    state.optimizer.load_state_dict(ckpt["optimizer"])
    state.scheduler.load_state_dict(ckpt["scheduler"])
    state.scaler.load_state_dict(ckpt["scaler"])
    state.num_updates = int(ckpt["num_updates"])
    _set_rng_state(ckpt["rng"])


def _metrics_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _keep_metrics_until(path: Path, epoch: int) -> None:
    """Drop metric lines past the checkpoint (an epoch that finished its line but not its checkpoint
    is trained again, and must not appear twice)."""
    rows = [r for r in _metrics_rows(path) if r.get("epoch", 0) <= epoch]
    text = "".join(json.dumps(r) + "\n" for r in rows).encode()
    atomic_write(path, lambda f: f.write(text))


def _append_line(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def run(plan: TrainPlan, results_path: str | os.PathLike | None = DEFAULT_RESULTS,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        on_step: Callable[[StepInfo], None] | None = None) -> ResultRecord:
    """Train ``plan`` to its last epoch (continuing its checkpoint if it has one), then write the final
    weights, ONNX and the result record (to ``results_path``; None: none). ``on_epoch`` gets each
    metrics row after its checkpoint is on disk; ``on_step`` gets :class:`StepInfo` after each update.
    A finished run (``plan.finished``) is not trained or recorded again: its ``result.json`` is returned."""
    env, tc, out = plan.env, plan.tc, plan.out_dir
    if plan.finished:
        return ResultRecord.from_dict(json.loads((out / RESULT).read_text()))
    _init_distributed(env)
    if env.world > 1:
        # DDP compares grad and bucket strides including those of size-1 dimensions (depthwise conv
        # weights, C x 1 x k x k), where a stride means nothing; the warning it prints is noise here.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    if plan.transforms is not None:
        _set_transform(plan.data.train, plan.transforms[0])
        _set_transform(plan.data.val, plan.transforms[1])
    train_loader, val_loader, sampler, gen = _loaders(plan)
    state = build_state(plan.net_cfg, tc, len(train_loader), env, plan.lr)
    totals = {"train_images": 0.0, "train_seconds": 0.0, "wall_seconds": 0.0}
    row: dict[str, Any] = {}
    if plan.checkpoint is not None:
        _restore(state, plan.checkpoint)
        totals.update(plan.checkpoint.get("totals", {}))
        row = dict(plan.checkpoint.get("metrics") or {})
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(tc.to_dict(), indent=2) + "\n")
        _keep_metrics_until(out / METRICS, plan.start_epoch)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
    for epoch in range(plan.start_epoch, tc.epochs):
        t_epoch = time.perf_counter()
        _seed_epoch(tc.seed, epoch, env.rank, gen)
        sampler.set_epoch(epoch)
        lr = state.optimizer.param_groups[0]["lr"]
        loss, images, seconds = _train_epoch(state, train_loader, epoch, tc.epochs, env, on_step)
        state.scheduler.step(epoch + 1)  # per-epoch schedule (a no-op when it follows updates)
        _sync_buffers(state.model, env)
        val = evaluate(state.model, val_loader, state.device, env, state.amp_dtype)
        ema = evaluate(state.ema.module, val_loader, state.device, env, state.amp_dtype) if state.ema else None
        totals["train_images"] += images
        totals["train_seconds"] += seconds
        totals["wall_seconds"] += time.perf_counter() - t_epoch
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": loss, "val_loss": val["loss"], "val_top1": val["top1"],
               "val_top5": val["top5"], "ema_top1": ema["top1"] if ema else None, "ema_top5": ema["top5"] if ema else None,
               "images_per_s": images / seconds, "train_s": seconds, "seconds": time.perf_counter() - t_epoch,
               "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        if env.is_main:
            ckpt = _checkpoint(plan, state, epoch + 1, row, totals)
            atomic_write(out / CHECKPOINT, lambda f: torch.save(ckpt, f))
            _append_line(out / METRICS, row)
        if on_epoch is not None:
            on_epoch(row)
    return _finish(plan, state, row, totals, results_path)


# ---------------------------------------------------------------------------------------- outputs
def _save_safetensors(path: Path, module: nn.Module, net_cfg: EdgeViTConfig) -> None:
    from safetensors.torch import save

    sd = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    blob = save(sd, metadata={"arch_id": net_cfg.arch_id, "config": json.dumps(net_cfg.to_dict())})
    atomic_write(path, lambda f: f.write(blob))


def _export(plan: TrainPlan, module: nn.Module) -> dict[str, Any]:
    from search_space.export import check_onnx, export_onnx

    model = copy.deepcopy(module).cpu().float().eval()
    path = export_onnx(model, plan.out_dir / "model.onnx")
    check = check_onnx(model, path)
    return {"onnx": str(path), "onnx_max_abs_diff": check.max_abs_diff}


def _finish(plan: TrainPlan, state: TrainState, row: dict[str, Any], totals: dict[str, float],
            results_path: str | os.PathLike | None) -> ResultRecord:
    tc, out = plan.tc, plan.out_dir
    use_ema = state.ema is not None and row.get("ema_top1") is not None and row["ema_top1"] > row["val_top1"]
    extra: dict[str, Any] = {
        "trained_arch_id": plan.net_cfg.arch_id,
        "trained_config": plan.net_cfg.to_dict(),
        "num_classes": plan.net_cfg.num_classes,
        "num_train_images": plan.data.num_train,
        "num_val_images": plan.data.num_val,
        "images_per_s": totals["train_images"] / max(totals["train_seconds"], 1e-9),
        "train_seconds": totals["train_seconds"],
        "wall_seconds": totals["wall_seconds"],
        "device": torch.cuda.get_device_name(state.device) if state.device.type == "cuda" else "cpu",
        "world_size": plan.env.world,
        "global_batch": plan.global_batch,
        "lr": plan.lr,
        "seed": tc.seed,
        "recipe": tc.to_dict(),
        "recipe_source": RECIPE_SOURCE,
        "run_dir": str(out),
        "final_train_loss": row.get("train_loss"),
        "exported_weights": "ema" if use_ema else "model",
        "versions": {"torch": torch.__version__, "timm": _timm_version()},
    }
    env_main = plan.env.is_main
    if env_main:
        _save_safetensors(out / "model.safetensors", state.model, plan.net_cfg)
        if state.ema is not None:
            _save_safetensors(out / "model_ema.safetensors", state.ema.module, plan.net_cfg)
        (out / "config.json").write_text(plan.net_cfg.to_json() + "\n")
        if tc.export_onnx:
            extra.update(_export(plan, state.ema.module if use_ema else state.model))
    record = ResultRecord.of(plan.cfg, dataset=plan.data.name, epochs=tc.epochs, resolution=plan.net_cfg.resolution,
                             top1=row["val_top1"], top5=row["val_top5"], top1_ema=row.get("ema_top1"),
                             top5_ema=row.get("ema_top5"), fidelity=tc.fidelity, extra=extra)
    if env_main:
        # The record first: a crash between the two repeats the record on resume (read_results keeps
        # the latest), where the other order could lose it.
        if results_path is not None:
            append_result(record, results_path)
        blob = (json.dumps(record.to_dict(), indent=2) + "\n").encode()
        atomic_write(out / RESULT, lambda f: f.write(blob))
    return record


def _timm_version() -> str:
    import timm

    return timm.__version__


# ---------------------------------------------------------------------------------------- entry points
def train(cfg: EdgeViTConfig, data: str | os.PathLike | LoadedData, out_dir: str | os.PathLike | None = None,
          train_config: TrainConfig | None = None, resume: bool = False,
          results_path: str | os.PathLike | None = DEFAULT_RESULTS,
          on_epoch: Callable[[dict[str, Any]], None] | None = None,
          on_step: Callable[[StepInfo], None] | None = None, num_classes: int | None = None, dataset: str = "",
          download: bool = False) -> ResultRecord:
    """Train ``cfg`` on ``data`` with ``train_config`` (default: the released recipe) and return the
    result record it appended to ``results_path``. Errors in the input are raised before any file is
    written; see :func:`prepare` and :func:`run`."""
    plan = prepare(cfg, data, out_dir, train_config, resume, num_classes, dataset, download)
    for note in plan.notes:
        log.warning("%s", note)
    return run(plan, results_path, on_epoch, on_step)


def short_train(cfg: EdgeViTConfig, data: str | os.PathLike | LoadedData, epochs: int = 3, resolution: int | None = None,
                max_train_images: int | None = None, out_dir: str | os.PathLike | None = None,
                results_path: str | os.PathLike | None = DEFAULT_RESULTS, resume: bool = True,
                **changes: Any) -> ResultRecord:
    """A low-fidelity accuracy for ranking candidates (``fidelity="short"``): :meth:`TrainConfig.short`
    for ``epochs`` at ``resolution`` on at most ``max_train_images`` images. ``resume`` defaults to True
    so that asking again for a finished or interrupted short run continues it instead of failing."""
    tc = TrainConfig.short(epochs, resolution=resolution, max_train_images=max_train_images, **changes)
    if out_dir is None:
        name = data.name if isinstance(data, LoadedData) else Path(data).resolve().name
        res = resolution or cfg.resolution
        tag = f"e{epochs}-r{res}-n{max_train_images or 'all'}"
        out_dir = Path("runs") / "short" / f"{cfg.arch_id}-{name.replace('/', '-')}-{tag}"
    return train(cfg, data, out_dir, tc, resume=resume, results_path=results_path)


def iter_metrics(out_dir: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """The rows of a run's ``metrics.jsonl``, in order."""
    yield from _metrics_rows(Path(out_dir) / METRICS)
