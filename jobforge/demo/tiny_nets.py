"""Small networks with random weights, built on the spot, and Neo-style tarballs of them.

The compilation demo, its tests and ``bench/compile.py`` share them: an MLP (256→512→512→10), a CNN
(three 3×3 convolutions with batch norm, on 1×3×64×64) and a transformer encoder over 32 tokens.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, inputs: int = 256, hidden: int = 512, outputs: int = 10):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                    nn.Linear(hidden, outputs))

    def forward(self, x):
        return self.layers(x)


class CNN(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]

        self.features = nn.Sequential(*block(3, 16), *block(16, 32), *block(32, 64), nn.AdaptiveAvgPool2d(1),
                                      nn.Flatten())
        self.head = nn.Linear(64, classes)

    def forward(self, x):
        return self.head(self.features(x))


class Transformer(nn.Module):
    def __init__(self, width: int = 64, heads: int = 4, layers: int = 2, classes: int = 10):
        super().__init__()
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=4 * width, batch_first=True, dropout=0.0)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return self.head(self.encoder(x).mean(dim=1))


# name → (constructor, input shape)
MODELS = {"mlp": (MLP, (1, 256)), "cnn": (CNN, (1, 3, 64, 64)), "transformer": (Transformer, (1, 32, 64))}


def build(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """The model in eval mode with seeded random weights (batch-norm statistics too), and an example input."""
    make, shape = MODELS[name]
    torch.manual_seed(seed)
    model = make().eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
    return model, torch.randn(shape)


def torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """A traced and saved TorchScript file, as SageMaker Neo expects for PYTORCH.

    Traced with gradients on: without them, a transformer layer traces to its fused inference kernel
    (``aten::_transformer_encoder_layer_fwd``), which no exporter can convert."""
    torch.jit.trace(model, example, check_trace=False).save(str(path))
    return path


def exported(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """A torch.export program, whose input shapes a compilation job derives."""
    torch.export.save(torch.export.export(model, (example,)), str(path))
    return path


def tarball(files: list[Path], path: Path) -> Path:
    """model.tar.gz holding the files at its top level."""
    with tarfile.open(path, "w:gz") as tar:
        for file in files:
            tar.add(file, arcname=file.name)
    return path
