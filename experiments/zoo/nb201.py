"""NAS-Bench-201 TinyNetwork (C = 16, N = 5, 100 classes) from an arch_str.

Follows the network as ../shared/datasets/nb201-pi5/README.md specifies it:
stem Conv3×3+BN; three stages of five cells at 16/32/64 channels with residual
reduction blocks between them; head BN+ReLU, global average pool, Linear(64 → 100).
"""

import torch
from torch import nn

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def parse_arch(arch_str):
    """'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|' -> [[(op, 0)], [(op, 0), (op, 1)], [...]]."""
    nodes = []
    for part in arch_str.strip().split("+"):
        edges = []
        for token in filter(None, part.strip("|").split("|")):
            op, _, source = token.partition("~")
            if op not in OPS or not source.isdigit():
                raise ValueError(f"bad NAS-Bench-201 edge {token!r} in {arch_str!r}")
            edges.append((op, int(source)))
        nodes.append(edges)
    if [len(e) for e in nodes] != [1, 2, 3]:
        raise ValueError(f"{arch_str!r} is not a NAS-Bench-201 cell (expected 1, 2 and 3 edges)")
    return nodes


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in, c_out, kernel, stride=1):
        super().__init__(nn.ReLU(), nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(c_out))


class Zero(nn.Module):
    def forward(self, x):
        return x.mul(0.0)


def make_op(op, channels):
    if op == "none":
        return Zero()
    if op == "skip_connect":
        return nn.Identity()
    if op == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1)
    if op == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3)
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class Cell(nn.Module):
    def __init__(self, nodes, channels):
        super().__init__()
        self.nodes = nodes
        self.edges = nn.ModuleList(make_op(op, channels) for edges in nodes for op, _ in edges)

    def forward(self, x):
        states, index = [x], 0
        for edges in self.nodes:
            total = None
            for _, source in edges:
                value = self.edges[index](states[source])
                index += 1
                total = value if total is None else total + value
            states.append(total)
        return states[-1]


class ResidualReduction(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x):
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class TinyNetwork(nn.Module):
    def __init__(self, arch_str, channels=16, cells_per_stage=5, classes=100):
        super().__init__()
        nodes = parse_arch(arch_str)
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        layers, c = [], channels
        for stage in range(3):
            if stage:
                layers.append(ResidualReduction(c, c * 2))
                c *= 2
            layers += [Cell(nodes, c) for _ in range(cells_per_stage)]
        self.cells = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes))

    def forward(self, x):
        return self.head(self.cells(self.stem(x)))


INPUT_SHAPE = (1, 3, 32, 32)


def build(arch_str, seed=0):
    torch.manual_seed(seed)
    return TinyNetwork(arch_str).eval()


def random_arch(rng):
    """One cell of the search space, drawn uniformly (rng: a random.Random)."""
    return "+".join("|" + "|".join(f"{rng.choice(OPS)}~{j}" for j in range(n)) + "|" for n in (1, 2, 3))


def export_random_cells(folder, count, seed=0, prefix="nb201"):
    """count random cells as ONNX files in folder; returns their paths."""
    import os
    import random

    from experiments.zoo import export_onnx

    rng = random.Random(seed)
    paths = []
    for i in range(count):
        path = os.path.join(folder, f"{prefix}_{seed}_{i:03d}.onnx")
        export_onnx(build(random_arch(rng), seed=i), INPUT_SHAPE, path)
        paths.append(path)
    return paths
