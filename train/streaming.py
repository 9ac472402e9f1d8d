"""The text model run one streaming-layout segment at a time: what the streaming bundle's two text graphs hold.

In the streaming layout (``contract.prompt``) the prefix and each frame's block attend only to themselves, so
their keys and values at every layer are a function of the segment alone. ``block`` computes them for one
segment; ``readout`` runs the readout tokens over the keys and values of the prefix and the window's blocks.
Keys are kept as the projections give them, before the rotary encoding: ``readout`` rotates each to its
place in the window (positions 0..S-1 for the S context tokens, S.. for its own), which is what the text model
does over the whole prompt with the layout's mask. The layers' own modules compute every step, so a fine-tuned
or LoRA-adapted text model runs here as it does in training.

The state of a segment is one tensor ``[N, 2, layers, kv_heads, length, head_dim]``: keys (index 0) and
values (index 1) of every layer, for N segments of one length.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, eager_attention_forward, rotate_half


class StreamingTextModel(nn.Module):
    """A Llama-family text model (SmolVLM2's) as two calls, ``block`` and ``readout``."""

    def __init__(self, text_model: nn.Module) -> None:
        super().__init__()
        if not all(hasattr(text_model, name) for name in ("layers", "norm", "rotary_emb")):
            raise ValueError(f"the streaming layout needs a Llama-family text model; {type(text_model).__name__} "
                             "has no layers/norm/rotary_emb")
        self.text_model = text_model

    def _rotary(self, like: torch.Tensor, start: int | torch.Tensor, length: int | torch.Tensor):
        positions = (torch.arange(length, device=like.device) + start)[None]
        return self.text_model.rotary_emb(like, position_ids=positions)

    def _attend(self, layer: nn.Module, hidden: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                query: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The rest of one decoder layer once its (rotated) query, keys and values are known."""
        attn = layer.self_attn
        out, _ = eager_attention_forward(attn, query, keys, values, mask, scaling=attn.scaling)
        hidden = hidden + attn.o_proj(out.reshape(*hidden.shape[:-1], -1))
        return hidden + layer.mlp(layer.post_attention_layernorm(hidden))

    @staticmethod
    def _project(layer: nn.Module, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Query, keys and values ``[N, heads, L, head_dim]`` of one layer, before the rotary encoding."""
        attn = layer.self_attn
        x = layer.input_layernorm(hidden)
        shape = (*hidden.shape[:-1], -1, attn.head_dim)
        return tuple(proj(x).view(shape).transpose(1, 2) for proj in (attn.q_proj, attn.k_proj, attn.v_proj))

    def block(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        """Embeddings of N segments of one length ``[N, L, D]`` -> their state ``[N, 2, layers, kv, L, hd]``,
        each segment attending causally to itself only. The last layer's attention output is not needed (only
        its keys and values are), so it is not computed."""
        length = inputs_embeds.shape[1]
        cos, sin = self._rotary(inputs_embeds, 0, length)
        causal = torch.full((length, length), torch.finfo(inputs_embeds.dtype).min,
                            dtype=inputs_embeds.dtype, device=inputs_embeds.device).triu(1)[None, None]
        hidden, keys, values = inputs_embeds, [], []
        layers = self.text_model.layers
        for n, layer in enumerate(layers):
            query, key, value = self._project(layer, hidden)
            keys.append(key)
            values.append(value)
            if n + 1 < len(layers):
                query, key = apply_rotary_pos_emb(query, key, cos, sin)
                hidden = self._attend(layer, hidden, key, value, query, causal)
        return torch.stack([torch.stack(keys, 1), torch.stack(values, 1)], 1)

    def readout(self, inputs_embeds: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Readout embeddings ``[N, R, D]`` and the context's state ``[N, 2, layers, kv, S, hd]`` (prefix then
        blocks, in window order) -> the last readout token's final hidden state ``[N, D]``."""
        context_length, length = context.shape[4], inputs_embeds.shape[1]
        cos, sin = self._rotary(inputs_embeds, 0, context_length + length)
        context_cos, context_sin = cos[:, None, :context_length], sin[:, None, :context_length]
        own_cos, own_sin = cos[:, context_length:], sin[:, context_length:]
        own = torch.full((length, length), torch.finfo(inputs_embeds.dtype).min,
                         dtype=inputs_embeds.dtype, device=inputs_embeds.device).triu(1)
        mask = torch.cat([torch.zeros(length, context_length, dtype=own.dtype, device=own.device), own], 1)[None, None]
        hidden = inputs_embeds
        for n, layer in enumerate(self.text_model.layers):
            query, key, value = self._project(layer, hidden)
            query, key = apply_rotary_pos_emb(query, key, own_cos, own_sin)
            past = context[:, 0, n]
            past = past * context_cos + rotate_half(past) * context_sin
            hidden = self._attend(layer, hidden, torch.cat([past, key], 2), torch.cat([context[:, 1, n], value], 2),
                                  query, mask)
        return self.text_model.norm(hidden)[:, -1]
