"""The benchmark inputs, defined identically in benches/model.rs."""

import torch


def bench_token_ids(batch: int) -> torch.Tensor:
    """16 tokens per text: start, 14 ordinary tokens, end."""
    return torch.tensor(
        [[49406] + [320 + (7 * i + j) % 4000 for j in range(14)] + [49407] for i in range(batch)])


def bench_pixels(batch: int, size: int) -> torch.Tensor:
    """A deterministic pattern in CLIP's normalised range."""
    i = torch.arange(batch).view(-1, 1, 1, 1)
    c = torch.arange(3).view(1, -1, 1, 1)
    y = torch.arange(size).view(1, 1, -1, 1)
    x = torch.arange(size).view(1, 1, 1, -1)
    return ((i * 31 + c * 17 + y * 7 + x * 3) % 97).float() / 48.0 - 1.0
