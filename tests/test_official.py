"""Checkpoints of the released EdgeViT code load into the package's model, and dropout sits where the
released code has it.

``Released`` below re-implements the released constructor (saic-fi/edgevit ``src/edgevit.py``) for
these tests: its module names, its declaration order, its computations (token LayerNorm in the
patch embedding, AvgPool2d(1, r) sampling, explicit attention matmuls, dropout placement), written
from the released file's structure so that its ``state_dict()`` is what a released checkpoint holds.
"""
from __future__ import annotations

import argparse
import json

import pytest
import torch
import torch.nn as nn

from search_space import PRESETS, build_model
from search_space.official import CheckpointError, load_official, official_name


class _Mlp(nn.Module):  # Mlp (Linear) and CMlp (1x1 conv): fc1, act, drop, fc2, drop
    def __init__(self, dim: int, hidden: int, drop: float, conv: bool):
        super().__init__()
        layer = (lambda i, o: nn.Conv2d(i, o, 1)) if conv else nn.Linear
        self.fc1, self.act, self.fc2, self.drop = layer(dim, hidden), nn.GELU(), layer(hidden, dim), nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class _Attn(nn.Module):  # GlobalSparseAttn: qkv, attn_drop, proj, proj_drop, then sampler / LocalProp / norm
    def __init__(self, dim: int, heads: int, r: int, drop: float, attn_drop: float):
        super().__init__()
        self.heads, self.scale, self.sr = heads, (dim // heads) ** -0.5, r
        self.qkv = nn.Linear(dim, dim * 3)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(drop)
        if r > 1:
            self.sampler = nn.AvgPool2d(1, r)
            self.LocalProp = nn.ConvTranspose2d(dim, dim, r, stride=r, groups=dim)
            self.norm = nn.LayerNorm(dim)
        else:
            self.sampler, self.norm = nn.Identity(), nn.Identity()

    def forward(self, x, h, w):
        b, n, c = x.shape
        if self.sr > 1:
            x = self.sampler(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
        q, k, v = self.qkv(x).reshape(b, -1, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        a = self.attn_drop((q @ k.transpose(-2, -1) * self.scale).softmax(-1))
        x = (a @ v).transpose(1, 2).reshape(b, -1, c)
        if self.sr > 1:
            x = self.LocalProp(x.permute(0, 2, 1).reshape(b, c, h // self.sr, w // self.sr))
            x = self.norm(x.reshape(b, c, -1).permute(0, 2, 1))
        return self.proj_drop(self.proj(x))


class _LocalAgg(nn.Module):  # declared as released: conv2 before the depthwise "attn"
    def __init__(self, dim: int, hidden: int, drop: float):
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.BatchNorm2d(dim)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.conv2 = nn.Conv2d(dim, dim, 1)
        self.attn = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = _Mlp(dim, hidden, drop, conv=True)

    def forward(self, x):
        x = x + self.pos_embed(x)
        x = x + self.conv2(self.attn(self.conv1(self.norm1(x))))
        return x + self.mlp(self.norm2(x))


class _SelfAttn(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, r: int, drop: float, attn_drop: float):
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attn(dim, heads, r, drop, attn_drop)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, hidden, drop, conv=False)

    def forward(self, x):
        x = x + self.pos_embed(x)
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        t = t + self.attn(self.norm1(t), h, w)
        t = t + self.mlp(self.norm2(t))
        return t.transpose(1, 2).reshape(b, c, h, w)


class _LGL(nn.Module):
    def __init__(self, dim, heads, hidden, r, drop, attn_drop):
        super().__init__()
        self.LocalAgg = _LocalAgg(dim, hidden, drop) if r > 1 else nn.Identity()
        self.SelfAttn = _SelfAttn(dim, heads, hidden, r, drop, attn_drop)

    def forward(self, x):
        return self.SelfAttn(self.LocalAgg(x))


class _PatchEmbed(nn.Module):  # declared as released: norm before proj; LayerNorm over tokens
    def __init__(self, cin: int, cout: int, patch: int):
        super().__init__()
        self.norm = nn.LayerNorm(cout)
        self.proj = nn.Conv2d(cin, cout, patch, stride=patch)

    def forward(self, x):
        x = self.proj(x)
        b, c, h, w = x.shape
        return self.norm(x.flatten(2).transpose(1, 2)).reshape(b, h, w, c).permute(0, 3, 1, 2)


class Released(nn.Module):
    """The released EdgeVit's structure and names for one preset (drop_path 0: DropPath is Identity)."""

    def __init__(self, preset: str, drop_rate: float = 0.0, attn_drop_rate: float = 0.0):
        super().__init__()
        cfg = PRESETS[preset]
        dims = [s.width for s in cfg.stages]
        for i, st in enumerate(cfg.stages):
            setattr(self, f"patch_embed{i + 1}", _PatchEmbed(3 if i == 0 else dims[i - 1], st.width, 4 if i == 0 else 2))
        self.pos_drop = nn.Dropout(drop_rate)
        for i, st in enumerate(cfg.stages):
            setattr(self, f"blocks{i + 1}", nn.ModuleList(
                _LGL(st.width, st.heads, st.mlp_hidden, st.sr_ratio, drop_rate, attn_drop_rate) for _ in range(st.depth)))
        self.norm = nn.BatchNorm2d(dims[-1])
        self.head = nn.Linear(dims[-1], cfg.num_classes)

    def forward(self, x):
        for i in range(1, 5):
            x = getattr(self, f"patch_embed{i}")(x)
            if i == 1:
                x = self.pos_drop(x)
            for blk in getattr(self, f"blocks{i}"):
                x = blk(x)
        return self.head(self.norm(x).flatten(2).mean(-1))


def _randomised(model: nn.Module, seed: int) -> nn.Module:
    """Every tensor random, BatchNorm statistics included, so a tensor loaded in the wrong place shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.75 if "running_var" in name
                        else torch.randn(t.shape, generator=g) * 0.05)
    return model


def _ours(preset: str, **kw) -> nn.Module:
    model = build_model(PRESETS[preset], **kw)
    for m in model.modules():  # the explicit matmuls, as released
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    return model


@pytest.fixture(scope="module")
def released_xxs() -> Released:
    return _randomised(Released("edgevit_xxs"), seed=0).eval()


def test_every_tensor_of_the_released_model_has_one_place_in_ours(released_xxs):
    names = {official_name(k) for k in _ours("edgevit_xxs").state_dict()}
    assert names == set(released_xxs.state_dict())
    assert official_name("stages.0.blocks.0.local_agg.conv_dw.weight") == "blocks1.0.LocalAgg.attn.weight"
    assert official_name("stages.2.blocks.1.self_attn.attn.local_prop.bias") == "blocks3.1.SelfAttn.attn.LocalProp.bias"
    assert official_name("stages.3.downsample.norm.weight") == "patch_embed4.norm.weight"


def test_a_released_checkpoint_loaded_gives_the_released_outputs(released_xxs):
    ours = load_official(_ours("edgevit_xxs"), released_xxs.state_dict()).eval()
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = released_xxs(x), ours(x)
    assert want.shape == (2, 1000)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), (got - want).abs().max()
    ours.fused_attn = True
    for m in ours.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = True
    with torch.no_grad():
        assert torch.allclose(ours(x), want, atol=1e-4, rtol=1e-4)  # and with the fused attention


def test_dropout_sits_where_the_released_code_has_it(released_xxs):
    """Same weights, train mode, same seed: the dropout masks are drawn in the same order on the same
    shapes only if every dropout is where the released code has it (and none is added before the head)."""
    ref = Released("edgevit_xxs", drop_rate=0.3)
    ref.load_state_dict(released_xxs.state_dict())
    ours = load_official(_ours("edgevit_xxs", drop_rate=0.3), released_xxs.state_dict())
    ref.train(), ours.train()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(3)
    want = ref(x)
    torch.manual_seed(3)
    got = ours(x)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), (got - want).abs().max()
    torch.manual_seed(4)
    assert not torch.allclose(ours(x), want, atol=1e-3)  # dropout is really on
    drops = [n for n, m in ours.named_modules() if isinstance(m, nn.Dropout) and m.p > 0]
    assert "stages.0.pos_drop" in drops and "stages.0.blocks.0.local_agg.mlp.drop1" in drops
    assert not any(n.startswith(("head", "stages.1.pos_drop")) for n in drops)


@pytest.mark.parametrize("how", ["safetensors", "pth", "pth wrapped as a training script saves it"])
def test_checkpoint_files_are_read_without_unpickling(tmp_path, released_xxs, how):
    state = released_xxs.state_dict()
    if how == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "xxs.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        path = tmp_path / "xxs.pth"
        torch.save({"model": state, "epoch": 299} if "wrapped" in how else state, path)
    ours = load_official(_ours("edgevit_xxs"), path).eval()
    assert torch.equal(ours.stages[0].blocks[0].local_agg.conv_dw.weight, state["blocks1.0.LocalAgg.attn.weight"])


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and len(msg) < 400, msg
    return msg


def test_a_checkpoint_with_python_objects_is_refused_not_unpickled(tmp_path, released_xxs):
    path = tmp_path / "deit_style.pth"
    torch.save({"model": released_xxs.state_dict(), "args": argparse.Namespace(lr=5e-4)}, path)
    with pytest.raises(CheckpointError) as exc:
        load_official(_ours("edgevit_xxs"), path)
    assert "never unpickled" in _one_line(exc) and str(path) in str(exc.value)


@pytest.mark.parametrize("change,words", [
    (lambda s: s.pop("blocks3.2.LocalAgg.attn.weight"), "1 tensor(s) of this configuration missing, first "
                                                        "'blocks3.2.LocalAgg.attn.weight'"),
    (lambda s: s.__setitem__("blocks1.1.SelfAttn.norm1.weight", torch.ones(36)), "no place for, first "
                                                                                 "'blocks1.1.SelfAttn.norm1.weight'"),
    (lambda s: s.__setitem__("head.weight", torch.ones(10, 288)), "'head.weight' has shape 10x288"),
    (lambda s: s.__setitem__("norm.weight", [1.0] * 288), "'norm.weight' is a list, not a tensor"),
])
def test_a_checkpoint_that_does_not_fit_is_one_line_and_loads_nothing(released_xxs, change, words):
    state = dict(released_xxs.state_dict())
    change(state)
    ours = _ours("edgevit_xxs")
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    with pytest.raises(CheckpointError) as exc:
        load_official(ours, state)
    assert words in _one_line(exc)
    assert all(torch.equal(before[k], v) for k, v in ours.state_dict().items())


def test_another_size_is_refused_by_name_or_shape(released_xxs):
    with pytest.raises(CheckpointError) as exc:
        load_official(_ours("edgevit_s"), released_xxs.state_dict())
    assert "another size" in _one_line(exc)


@pytest.mark.parametrize("content,words", [(b"not a checkpoint", "cannot be read"), (None, "no such file")])
def test_unreadable_checkpoint_files_are_one_line(tmp_path, content, words):
    path = tmp_path / "x.safetensors"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as exc:
        load_official(_ours("edgevit_xxs"), path)
    assert words in _one_line(exc)
    with pytest.raises(CheckpointError, match="unknown kind"):
        (tmp_path / "x.json").write_text(json.dumps({}))
        load_official(_ours("edgevit_xxs"), tmp_path / "x.json")
