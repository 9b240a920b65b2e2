"""Image classifiers for the seed experiments, written here (random weights, 1000 classes).

MobileNetV2 (width 0.25–1.4), SqueezeNet 1.1, ShuffleNetV2 (0.5×, 1.0×), ResNet18 and
InceptionV3 (no auxiliary head). The layer layouts follow the published architectures,
so parameter and MAC counts can be checked against the papers.
"""

import torch
from torch import nn


def make_divisible(value, divisor=8):
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn(c_in, c_out, kernel=3, stride=1, groups=1, act=nn.ReLU6, padding=None, dims=2):
    conv = (nn.Conv2d if dims == 2 else nn.Conv3d)(c_in, c_out, kernel, stride,
                                                   kernel // 2 if padding is None else padding, groups=groups, bias=False)
    bn = (nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d)(c_out)
    return nn.Sequential(conv, bn, act(inplace=True)) if act else nn.Sequential(conv, bn)


# ---------------------------------------------------------------- MobileNetV2

class InvertedResidual(nn.Module):
    def __init__(self, c_in, c_out, stride, expand, dims=2):
        super().__init__()
        hidden = int(round(c_in * expand))
        self.residual = stride == 1 and c_in == c_out
        layers = [conv_bn(c_in, hidden, 1, dims=dims)] if expand != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden, dims=dims),
                   conv_bn(hidden, c_out, 1, act=None, dims=dims)]
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.block(x) if self.residual else self.block(x)


MOBILENET_V2_SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                        (6, 320, 1, 1)]


class MobileNetV2(nn.Module):
    def __init__(self, width=1.0, classes=1000):
        super().__init__()
        c_in = make_divisible(32 * width)
        last = make_divisible(1280 * max(1.0, width))
        layers = [conv_bn(3, c_in, 3, 2)]
        for t, c, n, s in MOBILENET_V2_SETTING:
            c_out = make_divisible(c * width)
            for i in range(n):
                layers.append(InvertedResidual(c_in, c_out, s if i == 0 else 1, t))
                c_in = c_out
        layers.append(conv_bn(c_in, last, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(last, classes))

    def forward(self, x):
        return self.classifier(self.features(x))


# ---------------------------------------------------------------- SqueezeNet 1.1

class Fire(nn.Module):
    def __init__(self, c_in, squeeze, expand, dims=2):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.squeeze = nn.Sequential(conv(c_in, squeeze, 1), nn.ReLU(inplace=True))
        self.expand1 = nn.Sequential(conv(squeeze, expand, 1), nn.ReLU(inplace=True))
        self.expand3 = nn.Sequential(conv(squeeze, expand, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, x):
        x = self.squeeze(x)
        return torch.cat([self.expand1(x), self.expand3(x)], 1)


class SqueezeNet(nn.Module):
    """SqueezeNet 1.1."""

    def __init__(self, classes=1000):
        super().__init__()
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, 2), nn.ReLU(inplace=True), pool(), Fire(64, 16, 64), Fire(128, 16, 64), pool(),
            Fire(128, 32, 128), Fire(256, 32, 128), pool(), Fire(256, 48, 192), Fire(384, 48, 192),
            Fire(384, 64, 256), Fire(512, 64, 256))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(512, classes, 1), nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x):
        return self.classifier(self.features(x))


# ---------------------------------------------------------------- ShuffleNetV2

def channel_shuffle(x, groups=2):
    shape = [int(d) for d in x.shape]  # static in the export, so the graph keeps known shapes
    x = x.reshape(shape[0], groups, shape[1] // groups, *shape[2:]).transpose(1, 2)
    return x.reshape(shape)


class ShuffleUnit(nn.Module):
    def __init__(self, c_in, c_out, stride, dims=2):
        super().__init__()
        self.stride = stride
        branch = c_out // 2
        relu = nn.ReLU
        if stride > 1:
            self.branch1 = nn.Sequential(conv_bn(c_in, c_in, 3, stride, groups=c_in, act=None, dims=dims),
                                         conv_bn(c_in, branch, 1, act=relu, dims=dims))
        self.branch2 = nn.Sequential(conv_bn(c_in if stride > 1 else branch, branch, 1, act=relu, dims=dims),
                                     conv_bn(branch, branch, 3, stride, groups=branch, act=None, dims=dims),
                                     conv_bn(branch, branch, 1, act=relu, dims=dims))

    def forward(self, x):
        if self.stride == 1:
            a, b = x.chunk(2, dim=1)
            out = torch.cat([a, self.branch2(b)], 1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], 1)
        return channel_shuffle(out)


SHUFFLENET_V2_CHANNELS = {0.5: (48, 96, 192, 1024), 1.0: (116, 232, 464, 1024), 1.5: (176, 352, 704, 1024),
                          2.0: (244, 488, 976, 2048)}


class ShuffleNetV2(nn.Module):
    def __init__(self, width=1.0, classes=1000):
        super().__init__()
        channels = SHUFFLENET_V2_CHANNELS[width]
        layers, c_in = [conv_bn(3, 24, 3, 2, act=nn.ReLU), nn.MaxPool2d(3, 2, 1)], 24
        for repeats, c_out in zip((4, 8, 4), channels[:3]):
            layers += [ShuffleUnit(c_in, c_out, 2)] + [ShuffleUnit(c_out, c_out, 1) for _ in range(repeats - 1)]
            c_in = c_out
        layers.append(conv_bn(c_in, channels[3], 1, act=nn.ReLU))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels[3], classes))

    def forward(self, x):
        return self.classifier(self.features(x))


# ---------------------------------------------------------------- ResNet18

class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.body = nn.Sequential(conv_bn(c_in, c_out, 3, stride, act=nn.ReLU), conv_bn(c_out, c_out, 3, act=None))
        self.shortcut = (conv_bn(c_in, c_out, 1, stride, act=None) if stride != 1 or c_in != c_out else nn.Identity())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, classes=1000):
        super().__init__()
        layers, c_in = [conv_bn(3, 64, 7, 2, act=nn.ReLU), nn.MaxPool2d(3, 2, 1)], 64
        for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes))

    def forward(self, x):
        return self.classifier(self.features(x))


# ---------------------------------------------------------------- InceptionV3

def basic(c_in, c_out, kernel, stride=1, padding=0):
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False), nn.BatchNorm2d(c_out, eps=0.001),
                         nn.ReLU(inplace=True))


class InceptionA(nn.Module):
    def __init__(self, c_in, pool_features):
        super().__init__()
        self.b1 = basic(c_in, 64, 1)
        self.b5 = nn.Sequential(basic(c_in, 48, 1), basic(48, 64, 5, padding=2))
        self.b3 = nn.Sequential(basic(c_in, 64, 1), basic(64, 96, 3, padding=1), basic(96, 96, 3, padding=1))
        self.bp = nn.Sequential(nn.AvgPool2d(3, 1, 1), basic(c_in, pool_features, 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b5(x), self.b3(x), self.bp(x)], 1)


class InceptionB(nn.Module):
    def __init__(self, c_in):
        super().__init__()
        self.b3 = basic(c_in, 384, 3, 2)
        self.b3d = nn.Sequential(basic(c_in, 64, 1), basic(64, 96, 3, padding=1), basic(96, 96, 3, 2))
        self.pool = nn.MaxPool2d(3, 2)

    def forward(self, x):
        return torch.cat([self.b3(x), self.b3d(x), self.pool(x)], 1)


class InceptionC(nn.Module):
    def __init__(self, c_in, c7):
        super().__init__()
        self.b1 = basic(c_in, 192, 1)
        self.b7 = nn.Sequential(basic(c_in, c7, 1), basic(c7, c7, (1, 7), padding=(0, 3)),
                                basic(c7, 192, (7, 1), padding=(3, 0)))
        self.b7d = nn.Sequential(basic(c_in, c7, 1), basic(c7, c7, (7, 1), padding=(3, 0)),
                                 basic(c7, c7, (1, 7), padding=(0, 3)), basic(c7, c7, (7, 1), padding=(3, 0)),
                                 basic(c7, 192, (1, 7), padding=(0, 3)))
        self.bp = nn.Sequential(nn.AvgPool2d(3, 1, 1), basic(c_in, 192, 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b7(x), self.b7d(x), self.bp(x)], 1)


class InceptionD(nn.Module):
    def __init__(self, c_in):
        super().__init__()
        self.b3 = nn.Sequential(basic(c_in, 192, 1), basic(192, 320, 3, 2))
        self.b7 = nn.Sequential(basic(c_in, 192, 1), basic(192, 192, (1, 7), padding=(0, 3)),
                                basic(192, 192, (7, 1), padding=(3, 0)), basic(192, 192, 3, 2))
        self.pool = nn.MaxPool2d(3, 2)

    def forward(self, x):
        return torch.cat([self.b3(x), self.b7(x), self.pool(x)], 1)


class InceptionE(nn.Module):
    def __init__(self, c_in):
        super().__init__()
        self.b1 = basic(c_in, 320, 1)
        self.b3 = basic(c_in, 384, 1)
        self.b3a, self.b3b = basic(384, 384, (1, 3), padding=(0, 1)), basic(384, 384, (3, 1), padding=(1, 0))
        self.b3d = nn.Sequential(basic(c_in, 448, 1), basic(448, 384, 3, padding=1))
        self.b3da, self.b3db = basic(384, 384, (1, 3), padding=(0, 1)), basic(384, 384, (3, 1), padding=(1, 0))
        self.bp = nn.Sequential(nn.AvgPool2d(3, 1, 1), basic(c_in, 192, 1))

    def forward(self, x):
        a = self.b3(x)
        d = self.b3d(x)
        return torch.cat([self.b1(x), self.b3a(a), self.b3b(a), self.b3da(d), self.b3db(d), self.bp(x)], 1)


class InceptionV3(nn.Module):
    """InceptionV3 for 299×299 input, without the auxiliary classifier."""

    def __init__(self, classes=1000):
        super().__init__()
        self.features = nn.Sequential(
            basic(3, 32, 3, 2), basic(32, 32, 3), basic(32, 64, 3, padding=1), nn.MaxPool2d(3, 2),
            basic(64, 80, 1), basic(80, 192, 3), nn.MaxPool2d(3, 2),
            InceptionA(192, 32), InceptionA(256, 64), InceptionA(288, 64), InceptionB(288),
            InceptionC(768, 128), InceptionC(768, 160), InceptionC(768, 160), InceptionC(768, 192),
            InceptionD(768), InceptionE(1280), InceptionE(2048))
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(2048, classes))

    def forward(self, x):
        return self.classifier(self.features(x))
