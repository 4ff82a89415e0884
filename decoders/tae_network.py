"""The tiny autoencoders' layers (torch.nn classes), imported when a TAE loads — see decoders/tae.py
for the architecture and the weight layouts."""

from __future__ import annotations

import torch
from torch import nn

WIDTH = 64
POOL_WIDTH = 4 * WIDTH
BLOCKS_PER_STAGE = 3
STAGES = 3


def _conv3(channels_in: int, channels_out: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1, bias=bias)


class SoftClamp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class ResidualBlock(nn.Module):
    """relu(conv-relu-conv-relu-conv(x) + x), optionally after x += pool(x)."""

    def __init__(self, pooled: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv3(WIDTH, WIDTH), nn.ReLU(), _conv3(WIDTH, WIDTH), nn.ReLU(),
                                  _conv3(WIDTH, WIDTH))
        self.skip = nn.Identity()
        self.fuse = nn.ReLU()
        self.pool = nn.Sequential(
            nn.Conv2d(WIDTH, POOL_WIDTH, 1, bias=False), nn.GroupNorm(4, POOL_WIDTH), nn.ReLU(),
            nn.Conv2d(POOL_WIDTH, WIDTH, 1, bias=False),
        ) if pooled else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))


def build_encoder(latent_channels: int, pooled: bool) -> nn.Sequential:
    layers: list[nn.Module] = [_conv3(3, WIDTH), ResidualBlock()]
    for stage in range(STAGES):
        deepest = stage == STAGES - 1
        layers.append(_conv3(WIDTH, WIDTH, stride=2, bias=False))
        layers.extend(ResidualBlock(pooled and deepest) for _ in range(BLOCKS_PER_STAGE))
    layers.append(_conv3(WIDTH, latent_channels))
    return nn.Sequential(*layers)


def build_decoder(latent_channels: int, pooled: bool) -> nn.Sequential:
    layers: list[nn.Module] = [SoftClamp(), _conv3(latent_channels, WIDTH), nn.ReLU()]
    for stage in range(STAGES):
        layers.extend(ResidualBlock(pooled and stage == 0) for _ in range(BLOCKS_PER_STAGE))
        layers.extend([nn.Upsample(scale_factor=2), _conv3(WIDTH, WIDTH, bias=False)])
    layers.extend([ResidualBlock(), _conv3(WIDTH, 3)])
    return nn.Sequential(*layers)
