"""Video (3D) classifiers after Efficient-3DCNNs: 16-frame 112×112 clips, 600 classes.

3D-SqueezeNet, 3D-ShuffleNetV2 and 3D-MobileNetV2 at widths 0.25–2.0, built from the
same blocks as the image models with three-dimensional convolutions.
"""

from torch import nn

from experiments.zoo.image import Fire, InvertedResidual, ShuffleUnit, conv_bn

INPUT_SHAPE = (1, 3, 16, 112, 112)
CLASSES = 600


class SqueezeNet3D(nn.Module):
    def __init__(self, classes=CLASSES):
        super().__init__()
        pool = lambda: nn.MaxPool3d(3, 2, 1)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv3d(3, 64, 3, (1, 2, 2), 1), nn.BatchNorm3d(64), nn.ReLU(inplace=True), pool(),
            Fire(64, 16, 64, dims=3), Fire(128, 16, 64, dims=3), pool(),
            Fire(128, 32, 128, dims=3), Fire(256, 32, 128, dims=3), pool(),
            Fire(256, 48, 192, dims=3), Fire(384, 48, 192, dims=3), Fire(384, 64, 256, dims=3),
            Fire(512, 64, 256, dims=3))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv3d(512, classes, 1), nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool3d(1), nn.Flatten())

    def forward(self, x):
        return self.classifier(self.features(x))


SHUFFLE3D_CHANNELS = {0.25: (32, 64, 128, 1024), 0.5: (48, 96, 192, 1024), 1.0: (116, 232, 464, 1024),
                      1.5: (176, 352, 704, 1024), 2.0: (244, 488, 976, 2048)}


class ShuffleNetV2_3D(nn.Module):
    def __init__(self, width=1.0, classes=CLASSES):
        super().__init__()
        channels = SHUFFLE3D_CHANNELS[width]
        layers, c_in = [conv_bn(3, 24, 3, (1, 2, 2), act=nn.ReLU, dims=3), nn.MaxPool3d(3, 2, 1)], 24
        for repeats, c_out in zip((4, 8, 4), channels[:3]):
            layers += [ShuffleUnit(c_in, c_out, 2, dims=3)] + [ShuffleUnit(c_out, c_out, 1, dims=3)
                                                               for _ in range(repeats - 1)]
            c_in = c_out
        layers.append(conv_bn(c_in, channels[3], 1, act=nn.ReLU, dims=3))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Dropout(0.2),
                                        nn.Linear(channels[3], classes))

    def forward(self, x):
        return self.classifier(self.features(x))


MOBILENET3D_SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1)]


class MobileNetV2_3D(nn.Module):
    def __init__(self, width=1.0, classes=CLASSES):
        super().__init__()
        c_in = int(32 * width)
        last = int(1280 * width) if width > 1.0 else 1280
        layers = [conv_bn(3, c_in, 3, (1, 2, 2), dims=3)]
        for t, c, n, s in MOBILENET3D_SETTING:
            c_out = int(c * width)
            for i in range(n):
                layers.append(InvertedResidual(c_in, c_out, s if i == 0 else 1, t, dims=3))
                c_in = c_out
        layers.append(conv_bn(c_in, last, 1, dims=3))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(last, classes))

    def forward(self, x):
        return self.classifier(self.features(x))
