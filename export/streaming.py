"""The text model run one streaming-layout segment at a time: what the streaming bundle's two text graphs hold.

In the streaming layout (``crashwatch.contract.prompt``) the prefix and each frame's block attend only to themselves, so
their keys and values at every layer are a function of the segment alone. ``block`` computes them for one
segment, keys rotated at their place within it; ``readout`` runs the readout tokens over the prefix's and the
window's blocks' keys and values. Rotary encodings are relative: a readout query at position m scoring a key
rotated at its place j in a block that starts at s gives what the whole prompt gives (key at s + j) once the
query is rotated by m - s instead of m. So the readout rotates its few query rows once per block, not the
window's keys, and attends with query heads grouped by their key/value head, never copying keys or values:
the same scores as the text model over the whole prompt with the layout's mask. The layers' own modules
compute every projection, norm and MLP, so a fine-tuned or LoRA-adapted text model runs here as in training.

The state of a segment is one tensor ``[N, 2, layers, kv_heads, length, head_dim]``: keys (index 0) and
values (index 1) of every layer, for N segments of one length. The readout takes the window's blocks stacked
after the key/value heads, ``[N, 2, layers, kv_heads, frames, length, head_dim]``, so that each layer's keys and
values are one slice that its matmuls use as they are: with the frames first, onnxruntime spent half the 500M
readout transposing and splitting the window's 44 MB of state (docs/benchmarks.md).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.llama.modeling_llama import eager_attention_forward, rotate_half


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The rotary encoding, as transformers' ``apply_rotary_pos_emb`` applies it, of ``x`` ``[..., L, hd]``."""
    return x * cos + rotate_half(x) * sin


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
        """Embeddings of N segments of one length ``[N, L, D]`` -> their state ``[N, 2, layers, kv, L, hd]``, keys
        rotated at positions 0..L-1, each segment attending causally to itself only. The last layer's attention
        output is not needed (only its keys and values are), so it is not computed."""
        length = inputs_embeds.shape[1]
        cos, sin = (t[:, None] for t in self._rotary(inputs_embeds, 0, length))
        causal = torch.full((length, length), torch.finfo(inputs_embeds.dtype).min,
                            dtype=inputs_embeds.dtype, device=inputs_embeds.device).triu(1)[None, None]
        hidden, keys, values = inputs_embeds, [], []
        layers = self.text_model.layers
        for n, layer in enumerate(layers):
            query, key, value = self._project(layer, hidden)
            key = _rotate(key, cos, sin)
            keys.append(key)
            values.append(value)
            if n + 1 < len(layers):
                hidden = self._attend(layer, hidden, key, value, _rotate(query, cos, sin), causal)
        return torch.stack([torch.stack(keys, 1), torch.stack(values, 1)], 1)

    def readout(self, inputs_embeds: torch.Tensor, prefix: torch.Tensor, blocks: torch.Tensor,
                keep: torch.Tensor | None = None) -> torch.Tensor:
        """Readout embeddings ``[N, R, D]``, the prefix's state ``[N, 2, layers, kv, P, hd]`` and the window's
        blocks' ``[N, 2, layers, kv, F, B, hd]`` (oldest first) -> the last readout token's final hidden state
        ``[N, D]``. ``keep`` ``[N, F, B]`` (1 or 0) withholds the block positions at 0 from the readout's
        attention, positions unchanged: a block seen by nothing else, withheld whole, is the window without
        that frame (the monitor's explanations, ``crashwatch.monitor.explain``)."""
        batch, length = inputs_embeds.shape[:2]
        layers, frames, block = blocks.shape[2], blocks.shape[4], blocks.shape[5]
        start = prefix.shape[4] + frames * block  # the readout's first position
        own_cos, own_sin = (t[:, None] for t in self._rotary(inputs_embeds, start, length))  # [1, 1, R, hd]
        # Block f (oldest first) starts at P + f * B: its keys see the query rotated by (frames - f) * B + r.
        offsets = ((frames - torch.arange(frames, device=blocks.device)) * block)[:, None] + \
            torch.arange(length, device=blocks.device)
        block_cos, block_sin = (t.view(1, 1, frames, length, -1) for t in self.text_model.rotary_emb(
            inputs_embeds, position_ids=offsets.reshape(1, -1)))
        causal = torch.full((length, length), torch.finfo(inputs_embeds.dtype).min,
                            dtype=inputs_embeds.dtype, device=inputs_embeds.device).triu(1)
        # One split each into every layer's keys and values (layer n: n and layers + n), not one per index.
        prefix_parts, block_parts = prefix.flatten(1, 2).unbind(1), blocks.flatten(1, 2).unbind(1)
        withheld = None if keep is None else \
            ((1 - keep) * torch.finfo(inputs_embeds.dtype).min).to(inputs_embeds.dtype).reshape(batch, 1, 1, -1)
        hidden = inputs_embeds
        for n, layer in enumerate(self.text_model.layers):
            query, key, value = self._project(layer, hidden)
            kv_heads = key.shape[1]
            groups = query.shape[1] // kv_heads
            rows = groups * length  # a key/value head's query rows: its group's heads x the readout tokens
            own_query = _rotate(query, own_cos, own_sin).reshape(batch, kv_heads, rows, -1)
            block_query = _rotate(query[:, :, None], block_cos, block_sin)  # [N, H, F, R, hd]
            block_query = block_query.view(batch, kv_heads, groups, frames, length, -1).transpose(2, 3).reshape(
                batch, kv_heads, frames, rows, -1)
            key = _rotate(key, own_cos, own_sin)
            prefix_keys, prefix_values = prefix_parts[n], prefix_parts[layers + n]  # [N, kv, P, hd]
            block_keys, block_values = block_parts[n], block_parts[layers + n]  # [N, kv, F, B, hd]
            to_window = (block_query @ block_keys.transpose(-1, -2)).transpose(2, 3).reshape(batch, kv_heads, rows, -1)
            scores = torch.cat([
                own_query @ prefix_keys.transpose(-1, -2),
                to_window if withheld is None else to_window + withheld,
                own_query @ key.transpose(-1, -2) + causal.repeat(groups, 1),
            ], -1) * layer.self_attn.scaling
            weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
            to_prefix, to_blocks, to_own = weights.split([prefix.shape[4], frames * block, length], -1)
            to_blocks = to_blocks.reshape(batch, kv_heads, rows, frames, block).transpose(2, 3)
            out = (to_prefix @ prefix_values + (to_blocks @ block_values).sum(2)
                   + to_own @ value)  # [N, kv, groups * R, hd]
            out = out.view(batch, kv_heads * groups, length, -1).transpose(1, 2).reshape(batch, length, -1)
            hidden = hidden + layer.self_attn.o_proj(out)
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        return self.text_model.norm(hidden)[:, -1]
