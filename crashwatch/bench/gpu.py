"""The GPU check (``crashwatch bench --gpu-check``), made to run in one short call on a lent GPU machine
(PyTorch, transformers and accelerate there; no TensorRT, no onnxruntime-gpu, no network):

- training steps of the 256M and 500M architectures (random weights, the built-in tokenizer) on CUDA in bf16
  with gradient checkpointing, as their configs train: samples per second and peak memory;
- the PyTorch fp16 reference of parity: each model in fp16 on the GPU against fp32 on the CPU on the same
  window (embedding cosine, probability difference), the reference an fp16 bundle's parity is checked against.

Random weights: the figures are throughput, memory and numerics, not accuracy. On a machine without a GPU it
runs on the CPU (``device``) for a smoke test.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

WARMUP_STEPS = 2


def _model(config_name: str, device: str) -> tuple[Any, Any, Any]:
    """The config's architecture with random weights, its prompt ids and config."""
    import torch

    from crashwatch.contract.prompt import PromptEncoder
    from crashwatch.train.config import load_config
    from crashwatch.train.model import CrashRiskModel, frame_tokens
    from crashwatch.train.tokenizer import builtin_tokenizer

    config = load_config(config_name)
    config.backbone.random_init = True
    tokenizer = builtin_tokenizer()
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    model = CrashRiskModel.from_backbone_config(config.backbone, config.head, image_token_id, config.image_size)
    prompt = PromptEncoder(tokenizer, config.window, frame_tokens(model.backbone.config, config.image_size))(
        config.question)
    return model.to(device), torch.tensor(np.asarray(prompt, dtype=np.int64), device=device)[None], config


def training_steps(config_name: str, device: str, steps: int) -> dict[str, Any]:
    """``steps`` optimizer steps at the config's batch size (after ``WARMUP_STEPS``), bf16 autocast on CUDA,
    gradient checkpointing and freezing as the config trains."""
    import torch

    torch.manual_seed(0)
    model, ids, config = _model(config_name, device)
    recipe = config.training
    model.apply_freezing(recipe.freeze, recipe.lora)
    if recipe.gradient_checkpointing:
        model.backbone.gradient_checkpointing_enable()
    model.train()
    batch = recipe.batch_size
    pixels = torch.randn(batch, config.num_frames, 3, config.image_size, config.image_size, device=device)
    ids, mask = ids.expand(batch, -1), torch.ones(batch, ids.shape[1], dtype=torch.long, device=device)
    labels = torch.tensor([k % 2 for k in range(batch)], dtype=torch.float32, device=device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    cuda = device.startswith("cuda")
    autocast = torch.autocast("cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=cuda)

    def step() -> float:
        with autocast:
            loss = model(pixels, ids, mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    for _ in range(WARMUP_STEPS):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    losses = [step() for _ in range(steps)]
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"config": config_name, "device": device, "batch": batch, "frames": config.num_frames,
            "image_size": config.image_size, "steps": steps, "samples_per_s": batch * steps / seconds,
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
            "loss_finite": all(np.isfinite(losses)), "gradient_checkpointing": recipe.gradient_checkpointing,
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def fp16_reference(config_name: str, device: str) -> dict[str, Any]:
    """One window through the model in fp16 on ``device`` and in fp32 on the CPU: image-embedding cosine and
    the probabilities' difference (an fp16 bundle's parity is held to this reference)."""
    import torch

    torch.manual_seed(0)
    model, ids, config = _model(config_name, "cpu")
    model.eval()
    pixels = torch.randn(1, config.num_frames, 3, config.image_size, config.image_size)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        reference_frames = model.encode_frames(pixels[0]).float()
        reference = torch.sigmoid(model(pixels, ids, mask).logits).item()
        half = model.to(device=device, dtype=torch.float16)
        frames = half.encode_frames(pixels[0].to(device, torch.float16)).float().cpu()
        probability = torch.sigmoid(half(pixels.to(device, torch.float16), ids.to(device), mask.to(device))
                                    .logits.float()).item()
    cosine = torch.nn.functional.cosine_similarity(frames.flatten(1), reference_frames.flatten(1)).min().item()
    return {"config": config_name, "device": device, "embedding_cosine_min": cosine,
            "probability_fp32": reference, "probability_fp16": probability,
            "probability_diff": abs(probability - reference)}


def table(runs: list[dict[str, Any]], references: list[dict[str, Any]], machine: str) -> str:
    lines = [f"GPU check ({machine}; random weights):", "",
             "| config | device | batch x frames x px | samples/s | peak memory | trainable parameters | loss finite |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        memory = "n/a" if r["peak_memory_gib"] is None else f"{r['peak_memory_gib']:.1f} GiB"
        lines.append(f"| {r['config']} | {r['device']} | {r['batch']} x {r['frames']} x {r['image_size']} | "
                     f"{r['samples_per_s']:.2f} | {memory} | {r['trainable_parameters'] / 1e6:.2f} M | "
                     f"{r['loss_finite']} |")
    lines += ["", "| config | fp16 on | embedding cosine (min over frames) | probability fp32 / fp16 | difference |",
              "| --- | --- | --- | --- | --- |"]
    for r in references:
        lines.append(f"| {r['config']} | {r['device']} | {r['embedding_cosine_min']:.5f} | "
                     f"{r['probability_fp32']:.4f} / {r['probability_fp16']:.4f} | {r['probability_diff']:.4f} |")
    return "\n".join(lines) + "\n"
