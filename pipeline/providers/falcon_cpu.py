"""Falcon Perception's torch model on a CPU: an adapter, not a copy of the package.

The package's torch path is written for CUDA: attention is ``torch.compile``-d flex attention driven by a
``BlockMask``, and the feed-forward gate is a Triton kernel.  Neither runs on a CPU.  ``enable(model)``
swaps, on one loaded model only, the three pieces that need a GPU for plain torch ops that compute the same
thing; everything else (loading, tokenizer, pre-processing, RoPE, KV cache, the generation loop, the box
heads) stays the package's own code:

* **Attention**: ``F.scaled_dot_product_attention`` with a dense boolean mask.  The mask is the package's
  own ``mask_mod`` (causal AND same-document AND not-left-pad, OR bidirectional within an image), evaluated
  densely with ``torch.nn.attention.flex_attention.create_mask`` instead of compiled into a ``BlockMask``.
  Falcon's attention sinks (output scaled by ``sigmoid(lse - sink)``, which needs flex attention's
  log-sum-exp) become one extra key per head whose logit is the sink and whose value is zero: the softmax
  over ``[scores, sink]`` gives exactly that scaling, and a row with nothing to attend to gives 0, as
  flex attention does.
* **Feed-forward**: ``relu(gate)**2 * up`` on the interleaved ``w13`` output with torch ops.
* **Output head**: logits for the last position only.  The batch engine reads ``logits[:, -1]`` and
  nothing else; computing the 65,536-way head for every prompt position would cost ``2 * vocab * dim``
  FLOPs and ``4 * vocab`` bytes per prompt token (~0.4 TFLOP and ~0.8 GB for a 3k-token prompt).

It must not be applied to a model that runs on CUDA (the package's kernels are faster there) or used with
an engine that reads logits at other positions (the paged engine); ``enable`` refuses a non-CPU model.
"""
from __future__ import annotations

import threading
import types

import torch
import torch.nn.functional as F

_state = threading.local()
_install_lock = threading.Lock()
_installed = False


class DenseMask:
    """What the package's model code expects of a ``BlockMask``, backed by a dense bool tensor.

    ``allowed`` is (B, 1, S, S): True = query row may attend to key column.  The model slices it per decode
    step with ``mask[:, :, block]`` (``BLOCK_SIZE`` 1: a block is a query row) and sets ``seq_lengths`` and
    ``mask_mod``, which a dense mask does not need."""

    BLOCK_SIZE = (1, 1)

    def __init__(self, allowed: torch.Tensor, row0: int = 0, mask_mod=None):
        self.allowed = allowed
        self.row0 = row0
        self.mask_mod = mask_mod
        self.seq_lengths = None

    def __getitem__(self, index) -> "DenseMask":
        row = index[2] if isinstance(index, tuple) and len(index) > 2 else 0
        return DenseMask(self.allowed, self.row0 + int(row), self.mask_mod)

    def rows(self, n_q: int, n_kv: int) -> torch.Tensor:
        return self.allowed[:, :, self.row0:self.row0 + n_q, :n_kv]


def sdpa_with_sinks(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor,
                    sinks: torch.Tensor) -> torch.Tensor:
    """softmax([q.k * scale, sink]) @ [v, 0] for (B, H, S, D) inputs; ``sinks`` is (H,).

    Equal to flex attention's output times ``sigmoid(lse - sink)`` (the package's post-attention)."""
    B, H, Sq, D = q.shape
    scale = D ** -0.5
    one = q.new_ones(B, H, Sq, 1)
    q1 = torch.cat([q, one], dim=-1)
    k1 = torch.cat([k, k.new_zeros(B, H, k.shape[2], 1)], dim=-1)
    sink_key = torch.zeros(B, H, 1, D + 1, dtype=k.dtype, device=k.device)
    sink_key[..., D] = (sinks.to(k.dtype) / scale).view(1, H, 1)
    k1 = torch.cat([k1, sink_key], dim=2)
    v1 = torch.cat([v, v.new_zeros(B, H, 1, v.shape[-1])], dim=2)
    mask = torch.cat([allowed.expand(B, 1, Sq, allowed.shape[-1]),
                      allowed.new_ones(B, 1, Sq, 1)], dim=-1)
    return F.scaled_dot_product_attention(q1, k1, v1, attn_mask=mask, scale=scale)


def _attention_forward(self, x, attention_masks, kv_cache, freqs_cis, freqs_cis_2d=None, input_pos=None,
                       batch_idx=None, flex_attn_kernel_options=None):
    xq, xk, xv = self._pre_attention(x, freqs_cis, freqs_cis_2d)  # (B, H, S, D), the package's own
    xk, xv = kv_cache.insert_kv(self.layer_id, xk, xv, input_pos=input_pos, batch_idx=batch_idx)
    out = sdpa_with_sinks(xq, xk, xv, attention_masks.rows(xq.shape[2], xk.shape[2]), self.sinks)
    return self.wo(out.permute(0, 2, 1, 3).contiguous().flatten(2))


def _feed_forward(self, x):
    x = F.rms_norm(x, (x.size(-1),))
    gate_up = self.w13(x).unflatten(-1, (self.hidden_dim, 2))  # interleaved [g0, u0, g1, u1, ...]
    return self.w2(F.relu(gate_up[..., 0]).square() * gate_up[..., 1])


class LastPositionHead(torch.nn.Module):
    """The output projection applied to the last position only: (B, S, D) -> (B, 1, vocab)."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.linear = linear

    def forward(self, h):
        return self.linear(h[:, -1:, :])


def _dense_attention_mask(mask_mod, B, H, Q_LEN, KV_LEN, *args, **kwargs):
    """Stands in for ``falcon_perception.attention.create_attention_mask`` while a CPU batch mask is built."""
    device = getattr(_state, "device", None)
    if device is None:
        return _original["create_attention_mask"](mask_mod, B, H, Q_LEN, KV_LEN, *args, **kwargs)
    from torch.nn.attention.flex_attention import create_mask
    return DenseMask(create_mask(mask_mod, B, 1, Q_LEN, KV_LEN, device=device), mask_mod=mask_mod)


def _batch_attention_mask(input_batch, **kwargs):
    """``create_batch_attention_mask`` of the package, dense on a CPU (its own mask_mods either way)."""
    if input_batch.device.type != "cpu":
        return _original["create_batch_attention_mask"](input_batch, **kwargs)
    _state.device = input_batch.device
    try:
        return _original["create_batch_attention_mask"](input_batch, **kwargs)
    finally:
        _state.device = None


_original: dict = {}


def _install() -> None:
    """Route the package's batch-mask builder through the dense variant for CPU inputs (once per process;
    CUDA inputs still get the package's compiled BlockMask)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        from falcon_perception import attention, batch_inference
        _original["create_attention_mask"] = attention.create_attention_mask
        _original["create_batch_attention_mask"] = batch_inference.create_batch_attention_mask
        attention.create_attention_mask = _dense_attention_mask
        batch_inference.create_batch_attention_mask = _batch_attention_mask
        _installed = True


def enable(model) -> None:
    """Make a loaded ``falcon_perception.model.FalconPerception`` on a CPU runnable (see the module doc)."""
    if model.device.type != "cpu":
        raise ValueError(f"falcon CPU adapter: the model is on {model.device}, not the CPU")
    _install()
    for layer in model.layers.values():
        layer.attention.forward = types.MethodType(_attention_forward, layer.attention)
        layer.feed_forward.forward = types.MethodType(_feed_forward, layer.feed_forward)
    if not isinstance(model.output, LastPositionHead):
        model.output = LastPositionHead(model.output)
