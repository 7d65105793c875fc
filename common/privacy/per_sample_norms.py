"""Per-sample gradient norms and clipped gradient sums of the discriminator's layers, without a second backward.

For every trainable layer type of D (Conv2d, GroupNorm, Linear, Embedding) this module computes, from the
layer's input activations and the gradient of the loss at its output ("backprops"):

- ``norm_squares``: each row's squared gradient norm for the layer's parameters, and
- ``clipped_sums``: the gradient of sum_i c_i * loss_i, i.e. the per-row gradients weighted by clipping
  coefficients c_i, summed over rows.

Convolutions pick, per layer, the cheaper of two exact ways to get the norms (Li et al. 2022, "mixed ghost
clipping"; Bu et al. 2023, "book-keeping"): *ghost norms* ||sum_t g_t a_t^T||^2 = sum_{t,t'} (a_t.a_t')(g_t.g_t')
cost O(T^2 (p + d)) for T output positions, p = C_in k^2 inputs and d = C_out outputs; *instantiating* the
per-row gradient costs O(T p d). Ghost wins when 2 T^2 < p d (the deep, small-resolution layers).

The Conv2d and GroupNorm norm samplers are also registered with Opacus (``register_norm_sampler``), which has
none for them, so Opacus' own ghost-clipping mode uses the same code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from opacus.grad_sample.utils import register_norm_sampler
from torch import nn


def conv_uses_ghost_norm(layer: nn.Conv2d, output_positions: int) -> bool:
    """True when ghost norms (O(T^2 (p + d))) are cheaper than per-row gradients (O(T p d)) for this layer."""
    inputs = layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
    return output_positions * (inputs + layer.out_channels) < inputs * layer.out_channels


class Workspace:
    """Buffers reused from step to step: large fresh allocations cost page faults that dwarf the copy itself."""

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """An uninitialised tensor of ``shape`` backed by the ``name`` buffer (grown when too small)."""
        numel = math.prod(shape)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < numel or buffer.dtype != like.dtype or buffer.device != like.device:
            buffer = self._buffers[name] = torch.empty(numel, dtype=like.dtype, device=like.device)
        return buffer[:numel].view(shape)

    def clear(self) -> None:
        self._buffers.clear()


#: Rows per unfold chunk are chosen so that one chunk of patches stays below this many bytes.
PATCH_CHUNK_BYTES = 8 * 2**20


def unfold_into(layer: nn.Conv2d, activation: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``F.unfold`` of a Conv2d's input, as [B, C_in k^2, T], written into ``out`` one kernel offset at a time.

    One strided copy per kernel offset keeps the reads local; it is several times faster than torch's im2col
    on CPU here (bench/bench_dp_step.py).
    """
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = layer.kernel_size, layer.stride, layer.padding, layer.dilation
    padded = F.pad(activation, (pw, pw, ph, ph))
    batch, channels = activation.shape[:2]
    out_h = (padded.shape[2] - dh * (kh - 1) - 1) // sh + 1
    out_w = (padded.shape[3] - dw * (kw - 1) - 1) // sw + 1
    patches = out.view(batch, channels, kh, kw, out_h, out_w)
    for i in range(kh):
        for j in range(kw):
            rows, cols = i * dh, j * dw
            patches[:, :, i, j] = padded[
                :, :, rows : rows + sh * (out_h - 1) + 1 : sh, cols : cols + sw * (out_w - 1) + 1 : sw
            ]
    return out


def _check_conv(layer: nn.Conv2d) -> None:
    if layer.groups != 1 or isinstance(layer.padding, str) or layer.padding_mode != "zeros":
        raise NotImplementedError("per-sample norms here support Conv2d with groups=1 and numeric zero padding")


class ConvNorms:
    """Conv2d: per-row norms (ghost or instantiated), then the coefficient-weighted gradient sum.

    The instantiated path keeps only the per-row gradients ([B, d, p]) once the norms are known; the ghost path
    keeps the layer's input and output gradient for one conv weight-gradient call with scaled rows.
    """

    def __init__(
        self, layer: nn.Conv2d, activation: torch.Tensor, backprops: torch.Tensor, workspace: Workspace | None = None
    ) -> None:
        _check_conv(layer)
        self.layer = layer
        self.workspace = workspace or Workspace()
        batch = len(activation)
        g = backprops.reshape(batch, layer.out_channels, -1)  # [B, d, T]
        self.ghost = conv_uses_ghost_norm(layer, g.shape[2])
        self.bias_rows = g.sum(dim=2) if layer.bias is not None else None  # [B, d]
        self.weight_squares = self._weight_squares(activation, g)
        self.kept: tuple[torch.Tensor, torch.Tensor] | None = (activation, backprops) if self.ghost else None

    def _weight_squares(self, activation: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        layer = self.layer
        batch, d, positions = g.shape
        p = layer.weight[0].numel()
        chunk = max(1, min(batch, PATCH_CHUNK_BYTES // max(1, p * positions * g.element_size())))
        squares = g.new_empty(batch)
        if not self.ghost:
            self.per_row = self.workspace.get(f"per_row-{id(layer)}", (batch, d, p), g)
        for start in range(0, batch, chunk):
            rows = slice(start, min(batch, start + chunk))
            n = rows.stop - rows.start
            a = unfold_into(layer, activation[rows], self.workspace.get("patches", (n, p, positions), g))  # [n, p, T]
            if self.ghost:  # sum_{t,t'} (a_t . a_t')(g_t . g_t'): two [n, T, T] Gram matrices
                squares[rows] = (torch.bmm(a.transpose(1, 2), a) * torch.bmm(g[rows].transpose(1, 2), g[rows])).sum(
                    dim=(1, 2)
                )
            else:
                torch.bmm(g[rows], a.transpose(1, 2), out=self.per_row[rows])
                squares[rows] = torch.linalg.vector_norm(self.per_row[rows], dim=(1, 2)).square()
        return squares

    def norm_squares(self) -> dict[nn.Parameter, torch.Tensor]:
        squares = {self.layer.weight: self.weight_squares}
        if self.bias_rows is not None:
            squares[self.layer.bias] = self.bias_rows.pow(2).sum(dim=1)
        return squares

    def clipped_sums(self, coef: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
        layer = self.layer
        if self.kept is None:
            weight = torch.einsum("b,bdp->dp", coef, self.per_row).view_as(layer.weight)
        else:  # the weight gradient of the coefficient-scaled backprops: torch's own conv backward kernel
            activation, backprops = self.kept
            weight = torch.ops.aten.convolution_backward(
                backprops * coef.view(-1, 1, 1, 1),
                activation,
                layer.weight,
                None,
                layer.stride,
                layer.padding,
                layer.dilation,
                False,
                [0, 0],
                layer.groups,
                [False, True, False],
            )[1]
        sums = {layer.weight: weight}
        if self.bias_rows is not None:
            sums[layer.bias] = coef @ self.bias_rows
        return sums


class GroupNormNorms:
    """GroupNorm's affine weight and bias: per-row gradients are [B, C] each, so they are instantiated."""

    def __init__(
        self, layer: nn.GroupNorm, activation: torch.Tensor, backprops: torch.Tensor, workspace: Workspace | None = None
    ) -> None:
        normalised = F.group_norm(activation, layer.num_groups, None, None, layer.eps)
        dims = tuple(range(2, activation.dim()))
        self.layer = layer
        self.rows = {
            layer.weight: (normalised * backprops).sum(dim=dims),
            layer.bias: backprops.sum(dim=dims),
        }  # [B, C]

    def norm_squares(self) -> dict[nn.Parameter, torch.Tensor]:
        return {p: rows.pow(2).sum(dim=1) for p, rows in self.rows.items()}

    def clipped_sums(self, coef: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
        return {p: coef @ rows for p, rows in self.rows.items()}


class LinearNorms:
    """Linear on [B, in] rows: the per-row gradient g a^T has norm |g| |a| (exact, no instantiation)."""

    def __init__(
        self, layer: nn.Linear, activation: torch.Tensor, backprops: torch.Tensor, workspace: Workspace | None = None
    ) -> None:
        if activation.dim() != 2:
            raise NotImplementedError("per-sample norms here support Linear on [batch, features] inputs")
        self.layer, self.activation, self.backprops = layer, activation, backprops

    def norm_squares(self) -> dict[nn.Parameter, torch.Tensor]:
        g2 = self.backprops.pow(2).sum(dim=1)
        squares = {self.layer.weight: g2 * self.activation.pow(2).sum(dim=1)}
        if self.layer.bias is not None:
            squares[self.layer.bias] = g2
        return squares

    def clipped_sums(self, coef: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
        scaled = self.backprops * coef.unsqueeze(1)
        sums = {self.layer.weight: scaled.t() @ self.activation}
        if self.layer.bias is not None:
            sums[self.layer.bias] = scaled.sum(dim=0)
        return sums


class EmbeddingNorms:
    """Embedding looked up with one index per row ([B] or [B, 1]): the row's gradient is its backprop."""

    def __init__(
        self, layer: nn.Embedding, activation: torch.Tensor, backprops: torch.Tensor, workspace: Workspace | None = None
    ) -> None:
        if activation.numel() != activation.shape[0]:
            raise NotImplementedError("per-sample norms here support one embedding lookup per row")
        self.layer = layer
        self.indices = activation.reshape(-1)
        self.rows = backprops.reshape(len(self.indices), -1)  # [B, dim]

    def norm_squares(self) -> dict[nn.Parameter, torch.Tensor]:
        return {self.layer.weight: self.rows.pow(2).sum(dim=1)}

    def clipped_sums(self, coef: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
        weight = torch.zeros_like(self.layer.weight).index_add_(0, self.indices, self.rows * coef.unsqueeze(1))
        return {self.layer.weight: weight}


LayerNorms = ConvNorms | GroupNormNorms | LinearNorms | EmbeddingNorms
LAYER_NORMS: dict[type[nn.Module], type[LayerNorms]] = {
    nn.Conv2d: ConvNorms,
    nn.GroupNorm: GroupNormNorms,
    nn.Linear: LinearNorms,
    nn.Embedding: EmbeddingNorms,
}


def _as_norm_sampler(layer_norms: type[LayerNorms]):
    def norm_sample(
        layer: nn.Module, activations: list[torch.Tensor], backprops: torch.Tensor
    ) -> dict[nn.Parameter, torch.Tensor]:
        return {p: s.sqrt() for p, s in layer_norms(layer, activations[0], backprops).norm_squares().items()}

    norm_sample.__doc__ = f"Opacus norm sampler: per-row gradient norms of each parameter, via {layer_norms.__name__}."
    return norm_sample


# Opacus ships ghost norms for Linear and Embedding only; these make its ghost mode cover D's other layers too.
register_norm_sampler(nn.Conv2d)(_as_norm_sampler(ConvNorms))
register_norm_sampler(nn.GroupNorm)(_as_norm_sampler(GroupNormNorms))
