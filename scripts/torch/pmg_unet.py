"""PyTorch mirror of pmg's denoiser (crates/pmg/src/diffusion/unet.rs + crates/pmg/src/diffusion/nn.rs), for training only.

burn stays the one implementation that runs the product; this file exists so the denoiser can be
trained with PyTorch (faster per step on a CPU, far faster on CUDA) and exported to the file that
`pmg::diffusion::load_denoiser` reads unchanged. crates/pmg/tests/unet_torch.rs checks that burn's forward on
weights written here matches this module's output (fixture from scripts/torch/golden_unet.py).

What is mirrored, and where it comes from (burn 0.22.1):
- Linear (burn-nn crates/pmg/src/modules/linear.rs): burn stores the weight as [d_input, d_output] (LinearLayout::Row);
  torch as [d_output, d_input]. Export/import transpose it. Default init KaimingUniform(gain 1/sqrt(3),
  fan_in) = U(+-1/sqrt(fan_in)) for weight and bias, which is torch's nn.Linear default.
- Conv2d: same [c_out, c_in, kh, kw] layout and same default init as torch.
- LayerNorm (norm/layer.rs): eps 1e-5, params `gamma`/`beta` (torch `weight`/`bias`).
- GroupNorm (norm/group.rs): eps 1e-5, biased variance over (channels of the group, h, w);
  nn.rs `group_norm`: 8 groups when c % 8 == 0, else 1. Params `gamma`/`beta`.
- CrossAttention (attention/cross_attention.rs): q/k/v/output Linears named `query`, `key`, `value`,
  `output`; scores = q k^T / sqrt(d_head); padding positions (mask true) are *replaced* by
  min_float = -1e4 (mask_fill) before a plain softmax; dropout 0 (nn.rs sets it). Init of its Linears:
  KaimingUniform(gain 1/sqrt(d_head)), i.e. U(+-sqrt(3 / (d_head * fan_in))).
- gelu: the exact erf form (burn-tensor activation `gelu`; burn-flex computes 0.5 x (1 + erf(x/sqrt 2))).
- timestep_embedding (unet.rs): f = exp(-ln(10000) * i / half) * t, cos then sin, in f32.

Parameter names are burn's module paths as written by `pmg::tensor_io::module_weights`
(`down0_attn.cross.query.weight`, `down1.norm1.gamma`, ...): the torch attribute names are the same
as the Rust field names, so only the norm parameter names and Linear weight layout need mapping.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

# burn CrossAttentionConfig default `min_float`.
MASK_MIN_FLOAT = -1.0e4
NORM_EPS = 1e-5


@dataclass
class UNetConfig:
    """crates/pmg/src/diffusion/unet.rs `UNetConfig` (serialised as the `config` metadata of an export)."""

    latent_channels: int = 4
    channels: list = field(default_factory=lambda: [64, 128])
    d_text: int = 576
    d_context: int = 256
    heads: int = 4

    def to_json(self) -> str:
        # serde_json's compact form, fields in the struct's order (what the burn export writes).
        d = asdict(self)
        d["channels"] = [int(c) for c in d["channels"]]
        return json.dumps(d, separators=(",", ":"))

    @staticmethod
    def from_json(s: str) -> "UNetConfig":
        d = json.loads(s)
        return UNetConfig(d["latent_channels"], list(d["channels"]), d["d_text"], d["d_context"], d["heads"])


def group_norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(8 if c % 8 == 0 else 1, c, eps=NORM_EPS)


def conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


def conv1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """nn.rs `upsample2`: nearest-neighbour 2x."""
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


class ResBlock(nn.Module):
    """nn.rs `ResBlock`: GN, SiLU, conv3, (+ Linear(SiLU(temb))), GN, SiLU, conv3; 1x1 skip when widths differ."""

    def __init__(self, cin: int, cout: int, temb: int | None):
        super().__init__()
        self.norm1 = group_norm(cin)
        self.conv1 = conv3(cin, cout)
        self.temb = nn.Linear(temb, cout) if temb is not None else None
        self.norm2 = group_norm(cout)
        self.conv2 = conv3(cout, cout)
        self.skip = conv1(cin, cout) if cin != cout else None

    def forward(self, x, temb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if self.temb is not None and temb is not None:
            h = h + self.temb(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        if self.skip is not None:
            x = self.skip(x)
        return x + h


class CrossAttention(nn.Module):
    """burn-nn `CrossAttention` with n_heads_kv == n_heads, dropout 0."""

    # False: explicit mask_fill(-1e4) + softmax, exactly burn's ops. True: F.scaled_dot_product_attention
    # with a boolean mask (masked scores at -inf instead of -1e4: exp(-1e4 - max) is 0 in f32/bf16
    # anyway, so the result is the same up to rounding); faster, especially on CUDA.
    use_sdpa = False

    def __init__(self, d_model: int, d_context: int, heads: int):
        super().__init__()
        self.heads = heads
        self.d_head = d_model // heads
        inner = heads * self.d_head
        self.query = nn.Linear(d_model, inner)
        self.key = nn.Linear(d_context, inner)
        self.value = nn.Linear(d_context, inner)
        self.output = nn.Linear(inner, d_model)
        gain = 1.0 / math.sqrt(self.d_head)
        for lin in (self.query, self.key, self.value, self.output):
            bound = math.sqrt(3.0) * gain / math.sqrt(lin.in_features)
            nn.init.uniform_(lin.weight, -bound, bound)
            nn.init.uniform_(lin.bias, -bound, bound)

    def forward(self, query, context, mask=None):
        """query [b, lq, d_model], context [b, lk, d_context], mask [b, lk] bool (True = padding)."""
        b, lq, _ = query.shape
        lk = context.shape[1]
        q = self.query(query).reshape(b, lq, self.heads, self.d_head).transpose(1, 2)
        k = self.key(context).reshape(b, lk, self.heads, self.d_head).transpose(1, 2)
        v = self.value(context).reshape(b, lk, self.heads, self.d_head).transpose(1, 2)
        if CrossAttention.use_sdpa:
            attn_mask = None if mask is None else (~mask)[:, None, None, :]
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        else:
            scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.d_head))
            if mask is not None:
                scores = scores.masked_fill(mask[:, None, None, :], MASK_MIN_FLOAT)
            o = torch.matmul(torch.softmax(scores, dim=-1), v)
        o = o.transpose(1, 2).reshape(b, lq, self.heads * self.d_head)
        return self.output(o)


class AttnBlock(nn.Module):
    """nn.rs `AttnBlock`: GN -> proj_in -> [+ self-attn(LN)] -> + cross-attn(LN, ctx) -> + ff(LN) -> proj_out, residual."""

    def __init__(self, c: int, d_context: int, heads: int, with_self: bool):
        super().__init__()
        self.norm_in = group_norm(c)
        self.proj_in = nn.Linear(c, c)
        self.norm_self = nn.LayerNorm(c, eps=NORM_EPS) if with_self else None
        self.self_attn = CrossAttention(c, c, heads) if with_self else None
        self.norm_cross = nn.LayerNorm(c, eps=NORM_EPS)
        self.cross = CrossAttention(c, d_context, heads)
        self.norm_ff = nn.LayerNorm(c, eps=NORM_EPS)
        self.ff1 = nn.Linear(c, 2 * c)
        self.ff2 = nn.Linear(2 * c, c)
        self.proj_out = nn.Linear(c, c)

    def forward(self, x, ctx, mask):
        b, c, h, w = x.shape
        t = self.norm_in(x).reshape(b, c, h * w).transpose(1, 2)
        t = self.proj_in(t)
        if self.self_attn is not None:
            q = self.norm_self(t)
            t = t + self.self_attn(q, q, None)
        t = t + self.cross(self.norm_cross(t), ctx, mask)
        t = t + self.ff2(F.gelu(self.ff1(self.norm_ff(t))))  # exact (erf) gelu, as burn's
        t = self.proj_out(t).transpose(1, 2).reshape(b, c, h, w)
        return x + t


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """unet.rs `timestep_embedding` (DDPM's sinusoids, cos then sin), f32 with the same op order."""
    half = dim // 2
    i = torch.arange(half, dtype=torch.float32, device=t.device)
    ln = torch.tensor(math.log(10000.0), dtype=torch.float32)  # f32 like `10000f32.ln()`
    freq = torch.exp((-ln * i) / float(half))
    arg = freq[None, :] * t.to(torch.float32)[:, None]
    return torch.cat([torch.cos(arg), torch.sin(arg)], dim=1)


class UNet(nn.Module):
    """unet.rs `UNet` (`UNetConfig::init` + `UNet::forward`), v-prediction on [b, c, 16, 16] latents."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        c0, c1 = cfg.channels
        t = 4 * c0
        dc, h = cfg.d_context, cfg.heads
        self.text_norm = nn.LayerNorm(cfg.d_text, eps=NORM_EPS)
        self.text_proj = nn.Linear(cfg.d_text, dc)
        self.time1 = nn.Linear(c0, t)
        self.time2 = nn.Linear(t, t)
        self.conv_in = conv3(cfg.latent_channels, c0)
        self.down0 = ResBlock(c0, c0, t)
        self.down0_attn = AttnBlock(c0, dc, h, False)
        self.down = conv3(c0, c0, 2)
        self.down1 = ResBlock(c0, c1, t)
        self.down1_attn = AttnBlock(c1, dc, h, True)
        self.mid1 = ResBlock(c1, c1, t)
        self.mid_attn = AttnBlock(c1, dc, h, True)
        self.mid2 = ResBlock(c1, c1, t)
        self.up1 = ResBlock(2 * c1, c1, t)
        self.up1_attn = AttnBlock(c1, dc, h, True)
        self.up = conv3(c1, c1)
        self.up0 = ResBlock(c1 + c0, c0, t)
        self.up0_attn = AttnBlock(c0, dc, h, False)
        self.out_norm = group_norm(c0)
        self.conv_out = conv3(c0, cfg.latent_channels)
        self.time_dim = c0

    def forward(self, x, t, text, mask):
        """x [b, c, 16, 16], t [b] (0..1000, float), text [b, l, d_text], mask [b, l] bool (True = padding)."""
        temb = timestep_embedding(t, self.time_dim).to(device=x.device, dtype=x.dtype)
        temb = self.time2(F.silu(self.time1(temb)))
        ctx = self.text_proj(self.text_norm(text))
        h0 = self.conv_in(x)
        h0 = self.down0_attn(self.down0(h0, temb), ctx, mask)
        h1 = self.down(h0)
        h1 = self.down1_attn(self.down1(h1, temb), ctx, mask)
        m = self.mid1(h1, temb)
        m = self.mid2(self.mid_attn(m, ctx, mask), temb)
        u1 = self.up1_attn(self.up1(torch.cat([m, h1], 1), temb), ctx, mask)
        u0 = self.up(upsample2(u1))
        u0 = self.up0_attn(self.up0(torch.cat([u0, h0], 1), temb), ctx, mask)
        return self.conv_out(F.silu(self.out_norm(u0)))


# ---------------------------------------------------------------------------------------------
# Names and layouts: torch state_dict <-> burn module paths (pmg::tensor_io::module_weights).


def _kinds(model: nn.Module) -> dict:
    """torch parameter name -> (burn name, transpose?)."""
    out = {}
    for mname, mod in model.named_modules():
        prefix = mname + "." if mname else ""
        if isinstance(mod, (nn.LayerNorm, nn.GroupNorm)):
            out[prefix + "weight"] = (prefix + "gamma", False)
            out[prefix + "bias"] = (prefix + "beta", False)
        elif isinstance(mod, nn.Linear):
            out[prefix + "weight"] = (prefix + "weight", True)
            out[prefix + "bias"] = (prefix + "bias", False)
        elif isinstance(mod, nn.Conv2d):
            out[prefix + "weight"] = (prefix + "weight", False)
            out[prefix + "bias"] = (prefix + "bias", False)
    return out


def burn_names(model: nn.Module) -> dict:
    """torch parameter name -> burn tensor name."""
    return {k: v[0] for k, v in _kinds(model).items()}


def to_burn(model: nn.Module, state: dict | None = None) -> dict:
    """Parameters (or `state`, a dict with the model's parameter names, e.g. EMA) as burn-named f32 CPU tensors."""
    kinds = _kinds(model)
    state = dict(model.named_parameters()) if state is None else state
    out = {}
    for name, p in state.items():
        burn, transpose = kinds[name]
        t = p.detach().to("cpu", torch.float32)
        out[burn] = (t.t() if transpose else t).contiguous()
    return out


def from_burn(model: nn.Module, tensors: dict) -> None:
    """Load burn-named tensors into `model` (every parameter must be present, no extras, shapes checked)."""
    kinds = _kinds(model)
    params = dict(model.named_parameters())
    wanted = {kinds[n][0]: n for n in params}
    missing = sorted(set(wanted) - set(tensors))
    extra = sorted(set(tensors) - set(wanted))
    if missing or extra:
        raise ValueError(f"missing tensors {missing[:5]}..., unexpected {extra[:5]}...")
    with torch.no_grad():
        for burn, name in wanted.items():
            t = tensors[burn].to(torch.float32)
            if kinds[name][1]:
                t = t.t()
            p = params[name]
            if tuple(t.shape) != tuple(p.shape):
                raise ValueError(f"`{burn}` has shape {tuple(tensors[burn].shape)}, expected {tuple(p.shape)} (burn layout)")
            p.copy_(t)


RETRIEVAL_TENSORS = ("retrieval.keys", "retrieval.center", "retrieval.latents")


def load_denoiser(path: str, device="cpu") -> tuple:
    """A burn denoiser export -> (UNet, metadata dict, retrieval tensors dict). Mirrors
    `pmg::diffusion::load_denoiser`: `config` metadata, the bank's tensors taken out first."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    cfg = UNetConfig.from_json(meta["config"])
    bank = {k: tensors.pop(k) for k in RETRIEVAL_TENSORS if k in tensors}
    model = UNet(cfg)
    from_burn(model, tensors)
    return model.to(device), meta, bank


def save_burn(path: str, tensors: dict, metadata: dict, dtype=torch.float16) -> None:
    """Write burn-named tensors as safetensors (the layout `Weights::from_bytes` reads: F16/F32)."""
    from safetensors.torch import save_file

    save_file({k: v.to(dtype).contiguous() for k, v in tensors.items()}, path, metadata=metadata)


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def retrieval_bank(conds: list, latents: torch.Tensor, names: list) -> tuple:
    """crates/pmg/src/diffusion/retrieval.rs `Retrieval::build` + `insert_into`: per entry, the mean of its
    conditioning rows ([len, width] each), centred by the mean over entries and L2-normalised;
    latents [n, per] as the denoiser sees them. Returns (tensors, metadata) to add to an export."""
    raw = torch.stack([c.to(torch.float32).mean(dim=0) for c in conds])  # Conditioning::mean
    center = raw.mean(dim=0)
    keys = raw - center
    norms = keys.norm(dim=1, keepdim=True)
    keys = torch.where(norms > 0, keys / torch.where(norms > 0, norms, torch.ones_like(norms)), keys)
    lat = latents.reshape(len(names), -1).to(torch.float32)
    tensors = {"retrieval.keys": keys, "retrieval.center": center, "retrieval.latents": lat}
    # serde_json's compact string list (non-ASCII kept as UTF-8, as serde writes it).
    return tensors, {"retrieval_names": json.dumps(list(names), separators=(",", ":"), ensure_ascii=False)}
