"""The report's residual CNN: six groups of (convs that change the width -> residual block -> pool)."""
from torch import nn


def conv_unit(c_in: int, c_out: int, norm: bool, dropout: float) -> list[nn.Module]:
    """3x3 conv (+ batch norm) + ReLU (+ channel dropout)."""
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=not norm)]
    layers += [nn.BatchNorm2d(c_out)] if norm else []
    layers += [nn.ReLU(inplace=True)]
    layers += [nn.Dropout2d(dropout)] if dropout else []
    return layers


class ResidualBlock(nn.Module):
    """Two 3x3 convs; with `residual` the input is added back before the last ReLU."""

    def __init__(self, channels: int, norm: bool, dropout: float, residual: bool):
        super().__init__()
        self.body = nn.Sequential(
            *conv_unit(channels, channels, norm, dropout),
            nn.Conv2d(channels, channels, 3, padding=1, bias=not norm),
            *([nn.BatchNorm2d(channels)] if norm else []),
        )
        self.residual = residual
        self.out = nn.Sequential(nn.ReLU(inplace=True), *([nn.Dropout2d(dropout)] if dropout else []))

    def forward(self, x):
        y = self.body(x)
        return self.out(y + x if self.residual else y)


class ResidualCNN(nn.Module):
    """Per width w: `convs_per_group` convs (the first one changes the width to w; one count for every
    group, or one per group), a residual block, then 2x2 max pooling while the feature map is larger
    than 1x1; then global average pooling and a linear classifier. 28x28 and 64x64 inputs both work.
    norm/dropout apply to the convs before the blocks, block_norm/block_dropout (default: the same) to
    the residual blocks, the two places where the report's framework offered them."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int,
                 widths=(64, 128, 256, 512, 256, 128), convs_per_group: int | tuple[int, ...] = 1,
                 norm: bool = True, dropout: float = 0.0, residual: bool = True,
                 block_norm: bool | None = None, block_dropout: float | None = None):
        super().__init__()
        counts = (convs_per_group,) * len(widths) if isinstance(convs_per_group, int) else tuple(convs_per_group)
        if len(counts) != len(widths):
            raise ValueError(f"{len(counts)} conv counts for {len(widths)} groups")
        block_norm = norm if block_norm is None else block_norm
        block_dropout = dropout if block_dropout is None else block_dropout
        layers, channels, size = [], in_channels, image_size
        for width, count in zip(widths, counts, strict=True):
            for _ in range(count):
                layers += conv_unit(channels, width, norm, dropout)
                channels = width
            layers.append(ResidualBlock(width, block_norm, block_dropout, residual))
            if size > 1:
                layers.append(nn.MaxPool2d(2))
                size //= 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))
