"""Per-row clipped gradient sum in one backward pass (book-keeping clipping, Bu et al. 2023).

Forward hooks keep each trainable layer's input and put a gradient hook on its output; one
``torch.autograd.grad`` call (the input-gradient half of a plain backward, no weight gradient is formed) makes
every layer's output gradient pass through its hook, where ``common.privacy.per_sample_norms`` turns it into per-row
squared norms and keeps only what the clipped sum needs. Then the clipping coefficients
c_i = min(1, C / (norm_i + 1e-6)) (Opacus' formula) weight the rows of each layer's gradient. The result lands
in ``p.grad``, where Opacus' ``DPOptimizerFastGradientClipping`` adds the noise, divides by the expected batch
size and steps the accountant: the privacy mechanism is Opacus' own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from cxr_fedsynth.common.privacy.per_sample_norms import LAYER_NORMS, LayerNorms, Workspace


@dataclass
class _Record:
    module: nn.Module
    activation: torch.Tensor | None  # detached input, dropped once the layer's norms are known
    output: torch.Tensor | None  # dropped once its gradient has passed
    is_root: bool  # its input needs no gradient: backward is asked for this output's gradient
    norms: LayerNorms | None = None


class BookKeepingClipper:
    """Attach to a module; ``backward(per_row_loss)`` writes the clipped per-row gradient sum to ``p.grad``.

    The module's tensor inputs must not require gradients (D's images never do), so every gradient inside the
    forward flows from a recorded layer and asking backward for the root layers' outputs reaches them all.
    """

    def __init__(self, module: nn.Module, *, max_grad_norm: float) -> None:
        self.module = module
        self.max_grad_norm = max_grad_norm
        self._records: list[_Record] = []
        self._workspace = Workspace()
        self._handles: list[RemovableHandle] = [module.register_forward_pre_hook(self._check_inputs)]
        for name, layer in module.named_modules():
            if not any(p.requires_grad for p in layer.parameters(recurse=False)):
                continue
            if type(layer) not in LAYER_NORMS:
                self.detach()
                raise NotImplementedError(f"no per-sample norms for layer {name!r} ({type(layer).__name__})")
            self._handles.append(layer.register_forward_hook(self._capture))

    @staticmethod
    def _check_inputs(module: nn.Module, inputs: tuple[object, ...]) -> None:
        if any(isinstance(x, torch.Tensor) and x.requires_grad for x in inputs):
            raise ValueError(f"{type(module).__name__}: inputs must not require gradients under book-keeping clipping")

    def _capture(self, layer: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if not (layer.training and torch.is_grad_enabled()):
            return
        if any(r.module is layer for r in self._records):
            raise NotImplementedError(f"{type(layer).__name__} ran twice in one step: send all rows as one batch")
        record = _Record(layer, inputs[0].detach(), output, is_root=not inputs[0].requires_grad)
        self._records.append(record)
        if output.requires_grad:
            output.register_hook(lambda grad: self._on_output_grad(record, grad))

    def _on_output_grad(self, record: _Record, grad: torch.Tensor) -> None:
        with torch.no_grad():
            record.norms = LAYER_NORMS[type(record.module)](record.module, record.activation, grad, self._workspace)
        record.activation, record.output = None, None  # free them as early as plain backward would

    def backward(self, per_row_loss: torch.Tensor) -> torch.Tensor:
        """Set ``p.grad`` = sum_i clip(grad loss_i); returns the per-row gradient norms (never leave the site)."""
        records, self._records = self._records, []
        if not records:
            raise RuntimeError("no forward pass was recorded before backward (is the module in train mode?)")
        roots = [r.output for r in records if r.is_root and r.output.requires_grad]
        torch.autograd.grad(per_row_loss.sum(), roots, allow_unused=True)
        reached = [r.norms for r in records if r.norms is not None]  # unreached layers: zero gradient
        for record in records:  # unreached layers still hold their output: break output -> hook -> record -> output
            record.output, record.norms = None, None
        with torch.no_grad():
            squares = torch.stack([s for norms in reached for s in norms.norm_squares().values()]).sum(dim=0)
            norms = squares.sqrt()
            coef = (self.max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
            for layer_norms in reached:
                for param, clipped in layer_norms.clipped_sums(coef).items():
                    param.grad = clipped
            for param in self.module.parameters():
                if param.requires_grad and param.grad is None:
                    param.grad = torch.zeros_like(param)
        return norms

    def detach(self) -> None:
        """Remove the hooks and buffers; the module is plain torch again."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._records.clear()
        self._workspace.clear()
