"""A small MobileNetV2-style CNN for 28x28 MNIST digits: inverted residual blocks (1x1 expand,
3x3 depthwise, 1x1 linear projection, identity shortcut when shapes allow), batch norm, ReLU6.

Importable on its own (no tinydeploy imports) so that a whole pickled module (`torch.save(model)`)
can be loaded again wherever this folder is on the Python path.
"""
from __future__ import annotations

import torch
from torch import nn


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, relu6: bool = True):
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU6()) if relu6 else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.body = nn.Sequential(
            *([conv_bn(cin, hidden, 1)] if expand != 1 else []),
            conv_bn(hidden, hidden, 3, stride, groups=hidden),
            conv_bn(hidden, cout, 1, relu6=False),
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class MnistMobileNetV2(nn.Module):
    """1x28x28 in [0, 1] -> 10 logits."""

    # (output channels, stride, expansion) of each inverted residual block
    BLOCKS = ((16, 1, 1), (24, 2, 4), (24, 1, 4), (32, 2, 4), (32, 1, 4))

    def __init__(self, width: int = 16, head: int = 96, classes: int = 10):
        super().__init__()
        blocks, cin = [], width
        for cout, stride, expand in self.BLOCKS:
            blocks.append(InvertedResidual(cin, cout, stride, expand))
            cin = cout
        self.features = nn.Sequential(conv_bn(1, width, 3, stride=2), *blocks, conv_bn(cin, head, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(head, classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))
