"""Training settings of the projection head (``head.train_head``).

Apart from ``head.py`` so that building the CLI parser (which shows these defaults) imports no torch."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    out_dim: int = 128
    hidden: int = 512
    layers: int = 2  # 1: linear, 2: Linear -> GELU -> Linear
    steps: int = 300
    classes_per_batch: int = 16  # P
    samples_per_class: int = 4  # K
    clean_views: int = 1  # of the K views per label, how many are the un-augmented crop (cached features)
    lr: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.1
    seed: int = 0
