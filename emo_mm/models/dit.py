"""Diffusion Transformers: DiT and D-EMO (EMOv2's i2RMB in DiT's place), one network.

DiT (Peebles & Xie, "Scalable Diffusion Models with Transformers", ICCV 2023) denoises
latents patch by patch: a strided conv embeds ``p x p`` patches, a fixed 2-D sin-cos
positional embedding is added, a sequence of blocks conditioned on ``c = t_emb + y_emb``
(timestep and class) refines the tokens, and an adaLN-modulated final layer maps each
token back to its patch, with twice the input channels when the variance is learned.

D-EMO (EMOv2, Table XIV) keeps all of that and swaps each Transformer block for one i2RMB
(:class:`DEMOBlock`): spanning window attention over an expanded value, a depth-wise conv,
a projection, conditioned by adaLN (shift and scale after the pre-norm, a gate on the
residual branch in LayerScale's place). The authors released no code; the block's
remaining choices were reconstructed from their four training logs (the parameter totals
printed by DiT's ``train.py``); ``tests/test_dit.py`` checks each size's total against
them, and docs/generation.md tabulates the totals and the one B-2 difference.

Tokens stay a channels-first ``(B, hidden, H/p, W/p)`` map stored channels-last in memory
(the token sequence's own layout), so the i2RMB's convolutions and window attention run on
it directly and DiT's per-token layers run on ``map.movedim(1, -1)`` without copies.
Both blocks attend through :class:`emo_mm.models.attention.WindowAttention`: D-EMO with
its spanning windows, DiT with one global window (plain multi-head self-attention). DiT's
own checkpoints load after :func:`convert_official_dit` and give DiT's outputs (tested
against its ``models.py``).
"""
import math
from typing import Dict, Optional, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from ..registry import MODELS
from ..utils.deprecation import warn_renamed
from .arch import resolve_arch
from .attention import MIXERS, WindowAttention
from .blocks import I2RMB


# ---------------------------------------------------------------------------------------
# Embedders and the positional embedding (DiT's, unchanged).
# ---------------------------------------------------------------------------------------
def sincos_pos_embed_2d(dim: int, grid_size: int) -> torch.Tensor:
    """DiT's fixed 2-D sin-cos positional embedding, ``(grid_size**2, dim)``, row-major.

    The first ``dim / 2`` channels encode the column (x) index, the rest the row index;
    each half is ``[sin(pos * w), cos(pos * w)]`` with ``w_k = 10000^(-k / (dim / 4))``.
    Computed in float64, as DiT's numpy code does, then cast to float32.
    """
    if dim % 4:
        raise ValueError(f'The 2-D sin-cos embedding needs a hidden size divisible by 4, '
                         f'got {dim}.')
    omega = 1.0 / 10000**(torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    coords = torch.arange(grid_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing='ij')

    def embed(pos):
        angles = pos.reshape(-1, 1) * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([embed(cols), embed(rows)], dim=1).float()


def timestep_frequencies(t: torch.Tensor, dim: int = 256,
                         max_period: float = 10000.) -> torch.Tensor:
    """Sinusoidal features of (possibly fractional) timesteps: ``[cos(t w), sin(t w)]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) *
                      torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t[:, None].float() * freqs[None]
    embedding = torch.cat([angles.cos(), angles.sin()], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class Patchify(nn.Module):
    """DiT's patchify layer: non-overlapping ``p x p`` patches -> ``hidden`` channels (a
    strided conv with bias)."""

    def __init__(self, in_channels: int, hidden: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden, patch_size, stride=patch_size, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class TimestepEmbedder(nn.Module):
    """Timesteps -> 256 sinusoidal features -> Linear -> SiLU -> Linear (``hidden``)."""

    def __init__(self, hidden: int, frequency_dim: int = 256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(
            nn.Linear(frequency_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_frequencies(t, self.frequency_dim))


class LabelEmbedder(nn.Module):
    """Class labels -> ``hidden``, with label dropout for classifier-free guidance.

    Row ``num_classes`` of the table is the null (unconditional) class. In training each
    label is replaced by it with probability ``dropout_prob``; ``force_drop_ids`` (1 =
    drop) replaces chosen labels in any mode.
    """

    def __init__(self, num_classes: int, hidden: int, dropout_prob: float):
        super().__init__()
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob
        # The null row exists only when labels can be dropped (DiT's rule).
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), hidden)

    def token_drop(self, labels: torch.Tensor,
                   force_drop_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        if force_drop_ids is None:
            drop = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob
        else:
            drop = force_drop_ids == 1
        return torch.where(drop, torch.full_like(labels, self.num_classes), labels)

    def forward(self, labels: torch.Tensor,
                force_drop_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        if (self.training and self.dropout_prob > 0) or force_drop_ids is not None:
            labels = self.token_drop(labels, force_drop_ids)
        return self.embedding_table(labels)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: ``x * (1 + scale) + shift`` with per-sample vectors broadcast over tokens."""
    return x * (1 + scale) + shift


def per_channel(v: torch.Tensor) -> torch.Tensor:
    """(B, C) -> (B, C, 1, 1), to broadcast over a channels-first map."""
    return v[:, :, None, None]


def per_token(v: torch.Tensor) -> torch.Tensor:
    """(B, C) -> (B, 1, 1, C), to broadcast over a channels-last token grid."""
    return v[:, None, None, :]


def ada_layer(hidden: int, chunks: int) -> nn.Sequential:
    """SiLU -> Linear(hidden, chunks * hidden): the adaLN modulation of a block."""
    return nn.Sequential(nn.SiLU(), nn.Linear(hidden, chunks * hidden, bias=True))


# ---------------------------------------------------------------------------------------
# Blocks.
# ---------------------------------------------------------------------------------------
class DiTBlock(nn.Module):
    """DiT's adaLN-Zero Transformer block.

    ``x + gate_a * proj(attn(modulate(LN(x))))``, then
    ``x + gate_m * mlp(modulate(LN(x)))``; shift/scale/gate of both branches come from
    ``Linear(SiLU(c))`` (6 chunks, zero-initialised so a new block is the identity).
    LayerNorms have no affine parameters (eps 1e-6); the MLP uses tanh-GELU.

    Attention is :class:`~emo_mm.models.attention.WindowAttention` with one global window:
    its ``qk`` (hidden -> 2 hidden) and ``v`` (hidden -> hidden, no activation) are DiT's
    ``qkv`` Linear split in two (the same 3h^2 + 3h parameters, the same head-major channel
    order), followed by ``attn_proj``. A DiT checkpoint's ``attn.qkv`` rows ``[:2h]`` and
    ``[2h:]`` are these convs' weights.

    Args:
        hidden (int): Token width.
        num_heads (int): Attention heads.
        mlp_ratio (float): MLP width relative to ``hidden``. Defaults to 4.
        fused_attn (bool, optional): Attention path, see
            :func:`emo_mm.models.attention.attention`. Defaults to None (automatic).
    """

    def __init__(self, hidden: int, num_heads: int, mlp_ratio: float = 4.0,
                 fused_attn: Optional[bool] = None):
        super().__init__()
        if hidden % num_heads:
            raise ValueError(f'hidden {hidden} is not divisible by {num_heads} heads.')
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = WindowAttention(hidden, hidden, dim_head=hidden // num_heads,
                                    window_size=(0, 0), partitions=MIXERS['contiguous'],
                                    act='none', qkv_bias=True, fused_attn=fused_attn)
        self.attn_proj = nn.Linear(hidden, hidden, bias=True)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        mlp_hidden = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, mlp_hidden), nn.GELU(approximate='tanh'),
            nn.Linear(mlp_hidden, hidden))
        self.adaLN_modulation = ada_layer(hidden, 6)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x: (B, hidden, H, W) channels-last map; c: (B, hidden)."""
        chunks = self.adaLN_modulation(c).chunk(6, dim=1)
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = map(per_token, chunks)
        tokens = x.movedim(1, -1)  # (B, H, W, hidden), contiguous for channels-last maps
        y = modulate(self.norm1(tokens), shift_a, scale_a)
        # The attention returns the map in its input's (channels-last) layout, so this is
        # a view; contiguous() only guards the one-GEMM Linear on backends that differ.
        y = self.attn(y.movedim(-1, 1)).movedim(1, -1).contiguous()
        tokens = tokens + gate_a * self.attn_proj(y)
        tokens = tokens + gate_m * self.mlp(modulate(self.norm2(tokens), shift_m, scale_m))
        return tokens.movedim(-1, 1)

    @torch.no_grad()
    def init_weights(self) -> None:
        """DiT's init: xavier-uniform Linears (``qkv`` as the one (3h, h) matrix it is in
        DiT, so the split convs get DiT's distribution), zero biases, zero adaLN."""
        hidden = self.attn_proj.in_features
        qkv = torch.empty(3 * hidden, hidden, device=self.attn_proj.weight.device)
        nn.init.xavier_uniform_(qkv)
        self.attn.qk.conv.weight.copy_(qkv[:2 * hidden].view_as(self.attn.qk.conv.weight))
        self.attn.v.conv.weight.copy_(qkv[2 * hidden:].view_as(self.attn.v.conv.weight))
        nn.init.zeros_(self.attn.qk.conv.bias)
        nn.init.zeros_(self.attn.v.conv.bias)
        for linear in (self.attn_proj, self.mlp[0], self.mlp[2]):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)
        nn.init.zeros_(self.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.adaLN_modulation[-1].bias)


class DEMOBlock(I2RMB):
    """D-EMO's block: EMOv2's i2RMB conditioned by adaLN (reconstructed "design A").

    The i2RMB is the backbones' own (:class:`emo_mm.models.blocks.I2RMB`): affine channel
    LayerNorm pre-norm, spanning window attention (contiguous + strided windows on shared
    q/k, summed) over a GELU-activated value expanded ``exp_ratio`` times, a depth-wise
    conv with BatchNorm + SiLU and an inner residual, a 1x1 projection without bias. The
    adaLN modulation ``Linear(SiLU(c))`` gives 3 chunks: shift and scale applied after the
    pre-norm, and a gate on the branch that replaces LayerScale (zero-initialised, so a new
    block is the identity)::

        x + gate * proj(y + dwconv(y)),  y = attn(modulate(norm(x), shift, scale))

    Per block ``(3 + 2 + 4 e + 4 e) h^2`` weights: adaLN 3h^2 + 3h, qk 2h^2 + 2h, v
    (e h^2 + e h), depth-wise k^2 e h, BatchNorm 2 e h, proj e h^2, norm 2h; with
    e = 4, k = 5: 13h^2 + 119h.

    Args:
        hidden (int): Token width h.
        num_heads (int): Attention heads (q/k channels per head ``h / num_heads``).
        exp_ratio (float): Value expansion e. Defaults to 4.
        window_size (int): Attention window length (the 16x16 token map of a 256 image
            at p = 2 is 2x2 windows of 8). Defaults to 8.
        dw_kernel (int): Depth-wise kernel. Defaults to 5.
        fused_attn (bool, optional): Attention path. Defaults to None (automatic).
    """

    def __init__(self, hidden: int, num_heads: int, exp_ratio: float = 4.0,
                 window_size: int = 8, dw_kernel: int = 5,
                 fused_attn: Optional[bool] = None):
        if hidden % num_heads:
            raise ValueError(f'hidden {hidden} is not divisible by {num_heads} heads.')
        super().__init__(hidden, hidden, exp_ratio, norm='ln', act='gelu', mixer='spanning',
                         dw_kernel=dw_kernel, dim_head=hidden // num_heads,
                         window_size=window_size, local_norm='bn', local_act='silu',
                         qkv_bias=True, fused_attn=fused_attn)
        # The adaLN gate scales the branch per channel and sample: LayerScale's role.
        self.ls = nn.Identity()
        self.adaLN_modulation = ada_layer(hidden, 3)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x: (B, hidden, H, W) map; c: (B, hidden)."""
        shift, scale, gate = map(per_channel, self.adaLN_modulation(c).chunk(3, dim=1))
        y = self.mix(modulate(self.norm(x), shift, scale))
        y = y + self.se(self.conv_local(y))
        y = self.proj(self.proj_drop(y))
        return x + self.drop_path(gate * y)

    @torch.no_grad()
    def init_weights(self) -> None:
        """DiT's rule carried over: xavier-uniform for the layers in Linear's role (the
        1x1 convs q/k, v, proj), zero biases, zero adaLN; the depth-wise conv keeps
        PyTorch's default and BatchNorm starts at identity."""
        attn = self.eops[0]
        for conv in (attn.qk.conv, attn.v.conv, self.proj.conv):
            nn.init.xavier_uniform_(conv.weight.view(conv.out_channels, -1))
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.adaLN_modulation[-1].bias)


class FinalLayer(nn.Module):
    """LayerNorm -> adaLN (shift, scale) -> Linear(hidden, p * p * out_channels) per token.

    DiT's norm has no affine parameters; D-EMO's is affine (the reconstruction's one change
    around the blocks, +2h parameters). Both use eps 1e-6.
    """

    def __init__(self, hidden: int, patch_size: int, out_channels: int, affine_norm: bool):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden, elementwise_affine=affine_norm, eps=1e-6)
        self.linear = nn.Linear(hidden, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = ada_layer(hidden, 2)

    def forward(self, tokens: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = map(per_token, self.adaLN_modulation(c).chunk(2, dim=1))
        return self.linear(modulate(self.norm_final(tokens), shift, scale))


# ---------------------------------------------------------------------------------------
# The network.
# ---------------------------------------------------------------------------------------
#: DiT's sizes (hidden width, depth, heads, patch), which D-EMO keeps.
DIT_SIZES = {
    'S-2': dict(hidden=384, depth=12, heads=6, patch_size=2),
    'B-2': dict(hidden=768, depth=12, heads=12, patch_size=2),
    'L-2': dict(hidden=1024, depth=24, heads=16, patch_size=2),
    'XL-2': dict(hidden=1152, depth=28, heads=16, patch_size=2),
}


class DiffusionTransformer(BaseModule):
    """A class-conditional DiT-style denoiser with DiT or D-EMO blocks.

    ``net(x, t, y)`` takes latents ``x`` (B, C, H, W), timesteps ``t`` (B,) in [0, 1000)
    (ints or floats) and labels ``y`` (B,) in [0, num_classes] (``num_classes`` is the
    null class) and returns (B, 2C, H, W) with learned sigma (noise prediction in the first
    C channels, variance interpolation values in the last C), else (B, C, H, W).

    Subclasses :class:`DiT` and :class:`DEMO` set ``block`` and the named sizes.

    Args:
        arch (str | dict): A name in ``arch_settings`` or a dict with ``hidden``,
            ``depth``, ``heads``, ``patch_size`` and the block's keys (``mlp_ratio`` for
            DiT; ``exp_ratio``, ``window_size``, ``dw_kernel`` for D-EMO; defaults below).
        input_size (int): Latent height = width (32 for 256x256 images). Defaults to 32.
        in_channels (int): Latent channels. Defaults to 4.
        num_classes (int): Classes (a null class is added for guidance). Defaults to 1000.
        learn_sigma (bool): Also predict the variance (2C outputs). Defaults to True.
        class_dropout_prob (float): Label dropout in training (classifier-free guidance).
            Defaults to 0.1.
        fused_attn (bool, optional): Attention path of every block. Defaults to None.
        init_cfg (dict, optional): mmengine init config (e.g. a pretrained checkpoint).
    """

    block: str = ''
    arch_settings: Dict[str, dict] = {}
    #: Block settings an arch dict may omit.
    block_defaults: Dict[str, float] = {}

    def __init__(self,
                 arch: Union[str, dict] = 'S-2',
                 input_size: int = 32,
                 in_channels: int = 4,
                 num_classes: int = 1000,
                 learn_sigma: bool = True,
                 class_dropout_prob: float = 0.1,
                 fused_attn: Optional[bool] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        setting = self.resolve_arch(arch)
        for name, value in (('input_size', input_size), ('in_channels', in_channels),
                            ('num_classes', num_classes)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f'{name} must be a positive int, got {value!r}.')
        if not 0 <= class_dropout_prob < 1:
            raise ValueError(f'class_dropout_prob must be in [0, 1), got {class_dropout_prob}.')
        patch_size, hidden = setting['patch_size'], setting['hidden']
        if input_size % patch_size:
            raise ValueError(f'input_size {input_size} is not a multiple of the patch size '
                             f'{patch_size}.')
        self.arch = setting
        self.input_size = input_size
        self.in_channels = in_channels
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.num_classes = num_classes
        self.learn_sigma = learn_sigma
        self.patch_size = patch_size
        self.hidden = hidden
        self.grid_size = input_size // patch_size

        self.x_embedder = Patchify(in_channels, hidden, patch_size)
        self.t_embedder = TimestepEmbedder(hidden)
        self.y_embedder = LabelEmbedder(num_classes, hidden, class_dropout_prob)
        # Fixed, but a Parameter as in DiT (so counted in its parameter totals).
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid_size**2, hidden),
                                      requires_grad=False)
        self.blocks = nn.ModuleList(
            self.make_block(setting, fused_attn) for _ in range(setting['depth']))
        self.final_layer = FinalLayer(hidden, patch_size, self.out_channels,
                                      affine_norm=self.block == 'demo')
        self.reset_parameters()

    # -- architecture ------------------------------------------------------------------
    @classmethod
    def resolve_arch(cls, arch: Union[str, dict]) -> dict:
        """An arch name or dict -> a complete, validated setting."""
        setting = resolve_arch(cls.__name__, arch, cls.arch_settings, cls.block_defaults,
                               ('hidden', 'depth', 'heads', 'patch_size'))
        if isinstance(arch, str):
            return setting
        for key, value in setting.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f'arch[{key!r}] must be a positive number, got {value!r}.')
            if key != 'exp_ratio' and key != 'mlp_ratio' and not isinstance(value, int):
                raise ValueError(f'arch[{key!r}] must be an int, got {value!r}.')
        if setting['hidden'] % setting['heads']:
            raise ValueError(f"arch hidden {setting['hidden']} is not divisible by "
                             f"{setting['heads']} heads.")
        return setting

    def make_block(self, setting: dict, fused_attn: Optional[bool]) -> nn.Module:
        raise NotImplementedError

    # -- init --------------------------------------------------------------------------
    def init_weights(self) -> None:
        """MMEngine's hook: the checkpoint (or initialiser) of ``init_cfg`` when given,
        else DiT's initialisation again (:meth:`reset_parameters`)."""
        if self.init_cfg is not None:
            super().init_weights()
        else:
            self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """DiT's initialisation (applied on construction).

        Linears xavier-uniform with zero bias, the patch conv as a flattened Linear,
        embeddings N(0, 0.02), the fixed sin-cos positions, zero adaLN modulation in every
        block and a zero final layer, so a fresh network outputs exactly zero.
        """
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            block.init_weights()
        self.pos_embed.copy_(sincos_pos_embed_2d(self.hidden, self.grid_size)[None])
        weight = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        final = self.final_layer
        for layer in (final.adaLN_modulation[-1], final.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    # -- forward -----------------------------------------------------------------------
    def check_inputs(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> None:
        expected = (self.in_channels, self.input_size, self.input_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f'{type(self).__name__} expects inputs of shape (B, '
                             f'{", ".join(map(str, expected))}) (its fixed positional '
                             f'embedding sets the size), got {tuple(x.shape)}.')
        for name, value in (('t', t), ('y', y)):
            if value.shape != (x.shape[0], ):
                raise ValueError(f'{name} must have shape ({x.shape[0]},), one per sample, '
                                 f'got {tuple(value.shape)}.')
        if y.dtype.is_floating_point or y.dtype == torch.bool:
            raise TypeError(f'Labels y must be integers, got {y.dtype}.')
        top = self.y_embedder.embedding_table.num_embeddings - 1
        # Meta tensors (shape-only runs, e.g. FLOP counting) have no values to check.
        if len(y) and y.device.type != 'meta' and (int(y.min()) < 0 or int(y.max()) > top):
            null = (f' ({top} is the null class)' if top == self.num_classes else
                    ' (no null class: class_dropout_prob is 0)')
            raise ValueError(f'Labels must lie in [0, {top}]{null}, got '
                             f'[{int(y.min())}, {int(y.max())}].')

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, gh, gw, p * p * C) -> (B, C, gh * p, gw * p); channel order (p, q, C) as DiT."""
        batch, gh, gw = tokens.shape[:3]
        p, c = self.patch_size, self.out_channels
        x = tokens.reshape(batch, gh, gw, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(batch, c, gh * p, gw * p)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Denoiser output for noisy latents ``x`` at timesteps ``t`` with labels ``y``."""
        self.check_inputs(x, t, y)
        tokens = self.x_embedder(x).flatten(2).transpose(1, 2) + self.pos_embed
        # (B, N, h) tokens viewed as a (B, h, gh, gw) map: channels-last memory.
        x = tokens.transpose(1, 2).unflatten(2, (self.grid_size, self.grid_size))
        c = self.t_embedder(t) + self.y_embedder(y)
        for block in self.blocks:
            x = block(x, c)
        return self.unpatchify(self.final_layer(x.movedim(1, -1), c))

    def forward_with_cfg(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor,
                         cfg_scale: float, guidance_channels: Optional[int] = 3
                         ) -> torch.Tensor:
        """Classifier-free guidance, DiT's convention: a batch of 2n where the first n
        labels are classes and the last n the null class; only the first half of ``x`` is
        used (the model sees it twice). Returns 2n outputs whose first
        ``guidance_channels`` are ``uncond + cfg_scale * (cond - uncond)`` (the same for
        both halves) and whose other channels are the conditional pass's (first half) and
        unconditional pass's (second half) outputs.

        ``guidance_channels`` defaults to 3, DiT's choice that its published FIDs (and
        D-EMO's, sampled with DiT's script) were computed with; ``None`` guides all
        ``in_channels`` noise channels (what guidance means mathematically). It is
        clamped to ``in_channels`` so the variance channels are never guided.
        """
        if x.shape[0] % 2:
            raise ValueError(f'forward_with_cfg needs an even batch (conditional half, '
                             f'null-class half), got {x.shape[0]}.')
        half = x[:len(x) // 2]
        out = self.forward(torch.cat([half, half], dim=0), t, y)
        n = self.in_channels if guidance_channels is None else min(
            guidance_channels, self.in_channels)
        eps, rest = out[:, :n], out[:, n:]
        cond, uncond = eps.chunk(2, dim=0)
        guided = uncond + cfg_scale * (cond - uncond)
        return torch.cat([torch.cat([guided, guided], dim=0), rest], dim=1)


def convert_official_dit(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """A state dict of DiT's own code (facebookresearch/DiT ``models.py``, e.g. its released
    DiT-XL-2-256x256.pt) -> :class:`DiT`'s keys: ``attn.qkv`` splits into the attention's
    ``qk`` (rows ``[:2h]``) and ``v`` (rows ``[2h:]``) 1x1 convs, ``attn.proj`` becomes
    ``attn_proj``, ``mlp.fc1`` / ``mlp.fc2`` become ``mlp.0`` / ``mlp.2``; the rest is
    unchanged."""
    converted = {}
    for key, value in state_dict.items():
        if '.attn.qkv.' in key:
            prefix, kind = key.split('.attn.qkv.')
            hidden = value.shape[0] // 3
            qk, v = value[:2 * hidden], value[2 * hidden:]
            if kind == 'weight':  # Linear (out, in) -> 1x1 conv (out, in, 1, 1)
                qk, v = qk[..., None, None], v[..., None, None]
            converted[f'{prefix}.attn.qk.conv.{kind}'] = qk
            converted[f'{prefix}.attn.v.conv.{kind}'] = v
        else:
            converted[key.replace('.attn.proj.', '.attn_proj.').replace(
                '.mlp.fc1.', '.mlp.0.').replace('.mlp.fc2.', '.mlp.2.')] = value
    return converted


@MODELS.register_module()
class DiT(DiffusionTransformer):
    """DiT (Peebles & Xie, ICCV 2023) with its adaLN-Zero Transformer blocks.

    Parameter totals equal DiT's own (``tests/test_dit.py``). See
    :class:`DiffusionTransformer` for arguments.

    Example:
        >>> import torch
        >>> from emo_mm.models import DiT
        >>> net = DiT(dict(hidden=64, depth=2, heads=2, patch_size=2), input_size=8)
        >>> net(torch.randn(2, 4, 8, 8), torch.tensor([1, 500]), torch.tensor([0, 3])).shape
        torch.Size([2, 8, 8, 8])
    """

    block = 'dit'
    arch_settings = DIT_SIZES
    block_defaults = dict(mlp_ratio=4.0)

    def make_block(self, setting, fused_attn):
        return DiTBlock(setting['hidden'], setting['heads'], setting['mlp_ratio'], fused_attn)


@MODELS.register_module()
class DEMO(DiffusionTransformer):
    """D-EMO: DiT with EMOv2's i2RMB as the block (:class:`DEMOBlock`).

    Parameter totals equal the authors' training logs except B-2's, whose run was logged
    at ``input_size=64`` (``tests/test_dit.py``; docs/generation.md). See
    :class:`DiffusionTransformer` for arguments.

    Example:
        >>> import torch
        >>> from emo_mm.models import DEMO
        >>> net = DEMO(dict(hidden=64, depth=2, heads=2, patch_size=2, window_size=4),
        ...            input_size=16)
        >>> net(torch.randn(2, 4, 16, 16), torch.tensor([1, 500]), torch.tensor([0, 3])).shape
        torch.Size([2, 8, 16, 16])
    """

    block = 'demo'
    arch_settings = DIT_SIZES
    block_defaults = dict(exp_ratio=4.0, window_size=8, dw_kernel=5)

    def make_block(self, setting, fused_attn):
        return DEMOBlock(setting['hidden'], setting['heads'], setting['exp_ratio'],
                         setting['window_size'], setting['dw_kernel'], fused_attn)


def __getattr__(name):
    if name == 'PatchEmbed':  # the deprecated name of Patchify, kept for one release
        warn_renamed(f'{__name__}.PatchEmbed', f'{__name__}.Patchify')
        return Patchify
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
