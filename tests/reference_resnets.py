"""ResNets (and the other Table 1 networks) written by hand from their papers, independent of
connectome's spec and executor.

Modules are registered in network order (stem, stage 1, stage 2, ..., head), so their
state_dict values line up one to one with `network_state(model)` of the executor's model.
"""
import torch
import torch.nn.functional as F
from torch import nn


class PreActBottleneck(nn.Module):
    """He et al. 2016: BN-ReLU-Conv1x1, BN-ReLU-Conv3x3 (stride), BN-ReLU-Conv1x1 to 4x."""

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, 4 * planes, 1, bias=False)
        self.projection = None
        if stride != 1 or cin != 4 * planes:
            self.projection = nn.Conv2d(cin, 4 * planes, 1, stride=stride, bias=False)

    def forward(self, x):
        pre = F.relu(self.bn1(x))
        shortcut = x if self.projection is None else self.projection(pre)
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """CIFAR pre-activation bottleneck ResNet, depth 9n+2: 16-channel stem, stages 16/32/64 (x4)."""

    def __init__(self, depth, classes=10):
        super().__init__()
        n = (depth - 2) // 9
        self.conv0 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        units, cin = [], 16
        for i, planes in enumerate((16, 32, 64)):
            for j in range(n):
                units.append(PreActBottleneck(cin, planes, stride=2 if i and not j else 1))
                cin = 4 * planes
        self.units = nn.Sequential(*units)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.units(self.conv0(x))
        return self.fc(F.relu(self.bn(x)).mean((2, 3)))


class BasicBlock(nn.Module):
    """He et al. 2015: Conv3x3-BN-ReLU-Conv3x3-BN, add the shortcut (option A), ReLU."""

    def __init__(self, cin, cout, stride=1, survival=1.0):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.pad = stride, cout - cin
        self.survival = survival  # stochastic depth at test time: the branch scaled by p_l (Huang et al. 2016)

    def forward(self, x):
        out = self.survival * self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x[:, :, ::self.stride, ::self.stride]
        if self.pad:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + shortcut)


class ResNet(nn.Module):
    """The original CIFAR ResNet, depth 6n+2: conv-BN-ReLU stem, stages of 16/32/64, pool, FC.

    p_last: stochastic depth's last drop probability (1 - p_L); in evaluation unit l of L scales its
    branch by 1 - l/L * p_last, except the strided first units of stages 2 and 3 (never dropped)."""

    def __init__(self, depth, classes=10, p_last=0.0, base=16):
        super().__init__()
        n = (depth - 2) // 6
        self.conv0 = nn.Conv2d(3, base, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(base)
        units, cin = [], base
        for i, width in enumerate((base, 2 * base, 4 * base)):
            for j in range(n):
                strided = bool(i and not j)
                survival = 1.0 if strided else 1 - (i * n + j + 1) / (3 * n) * p_last
                units.append(BasicBlock(cin, width, stride=2 if strided else 1, survival=survival))
                cin = width
        self.units = nn.Sequential(*units)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.units(F.relu(self.bn0(self.conv0(x))))
        return self.fc(x.mean((2, 3)))


class WideBasic(nn.Module):
    """Zagoruyko & Komodakis 2016: BN-ReLU-Conv3x3 (stride), BN-ReLU, dropout, Conv3x3; a 1x1
    projection of the activated input where the width or size changes, else the raw input."""

    def __init__(self, cin, cout, stride=1, dropout=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.dropout = dropout
        self.projection = None
        if stride != 1 or cin != cout:
            self.projection = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x):
        pre = F.relu(self.bn1(x))
        shortcut = x if self.projection is None else self.projection(pre)
        out = F.dropout(F.relu(self.bn2(self.conv1(pre))), self.dropout, self.training)
        return self.conv2(out) + shortcut


class WideResNet(nn.Module):
    """WRN-d-k for CIFAR, d = 6n + 4: a 16-channel conv, stages of 16k/32k/64k, BN-ReLU, pool, FC."""

    def __init__(self, depth, k, dropout=0.0, classes=10):
        super().__init__()
        n = (depth - 4) // 6
        self.conv0 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        units, cin = [], 16
        for i, width in enumerate((16 * k, 32 * k, 64 * k)):
            for j in range(n):
                units.append(WideBasic(cin, width, stride=2 if i and not j else 1, dropout=dropout))
                cin = width
        self.units = nn.Sequential(*units)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.units(self.conv0(x))
        return self.fc(F.relu(self.bn(x)).mean((2, 3)))


class FractalBlock(nn.Module):
    """Larsson et al. 2016: C columns; column c (0 = shallowest) has a Conv-BN-ReLU every 2^(C-1-c)
    depths; the columns meeting at a depth are averaged and all continue from the mean."""

    def __init__(self, cin, cout, columns, dropout=0.0):
        super().__init__()
        self.columns, self.depth = columns, 2 ** (columns - 1)
        self.met = [[c for c in range(columns) if (d + 1) % 2 ** (columns - 1 - c) == 0] for d in range(self.depth)]
        self.convs = nn.ModuleList()  # depth-major, shallow column first
        started = set()
        for met in self.met:
            for c in met:
                layer = nn.Sequential(nn.Conv2d(cout if c in started else cin, cout, 3, padding=1, bias=False),
                                      nn.Dropout(dropout), nn.BatchNorm2d(cout), nn.ReLU())
                started.add(c)
                self.convs.append(layer)

    def forward(self, x, column=None, drop=0.0):
        """column: global drop-path keeps only that column (0-based) where it meets others; otherwise
        local drop-path drops each input of a join with probability `drop`, keeping at least one."""
        outs, convs = [x] * self.columns, iter(self.convs)
        for met in self.met:
            maps = [next(convs)(outs[c]) for c in met]
            kept = self._kept(met, column, drop)
            joined = torch.stack([m for m, k in zip(maps, kept) if k]).mean(0)
            for c in met:
                outs[c] = joined
        return outs[-1]

    @staticmethod
    def _kept(met, column, drop):
        if len(met) == 1:
            return [True]
        if column is not None:
            return [c == column for c in met] if column in met else [True] * len(met)
        kept = [r >= drop for r in torch.rand(len(met)).tolist()]  # drawn per join, whatever the rate
        if not any(kept):
            kept[int(torch.randint(len(kept), ()))] = True
        return kept


class FractalNet(nn.Module):
    """FractalNet for CIFAR: blocks of widths 64, 128, 256, 512, 512 (for base 64), each followed by a
    2x2 max pool, then a linear classifier on the 1x1 map (32x32 inputs); `dropout`: each block's rate
    after every conv."""

    def __init__(self, columns=3, base=64, blocks=5, classes=10, dropout=(0.0,) * 5):
        super().__init__()
        widths = [base * 2 ** max(0, min(i, blocks - 2)) for i in range(blocks)]
        self.blocks = nn.ModuleList(FractalBlock(cin, w, columns, p) for cin, w, p in zip([3, *widths], widths, dropout))
        self.fc = nn.Linear(widths[-1], classes)

    def forward(self, x, column=None, drop=0.0):
        for block in self.blocks:
            x = F.max_pool2d(block(x, column, drop), 2)
        return self.fc(x.flatten(1))


class HighwayLayer(nn.Module):
    """y = H(x) T(x) + x (1 - T(x)), H = ReLU(Conv3x3(x) + b), T = sigmoid(Conv3x3(x) + b_T)."""

    def __init__(self, c):
        super().__init__()
        self.h = nn.Conv2d(c, c, 3, padding=1)
        self.t = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        t = torch.sigmoid(self.t(x))
        return F.relu(self.h(x)) * t + x * (1 - t)


class HighwayNet(nn.Module):
    """Srivastava et al.'s 19-layer CIFAR highway net, layer by layer as their Caffe model
    (flukeskywalker/highway-networks, examples/highways/cifar10-19layers/cifar10_network.prototxt)."""

    def __init__(self, widths=(32, 80, 128), layers=(4, 5, 5), classes=10, dropout=0.2):
        super().__init__()
        self.p, self.stages, cin = dropout, nn.ModuleList(), 3
        for width, n in zip(widths, layers):
            self.stages.append(nn.Sequential(nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(),
                                             *(HighwayLayer(width) for _ in range(n))))
            cin = width
        self.conv_last = nn.Conv2d(cin, 100, 1)
        self.fc = nn.Linear(100, classes)

    def forward(self, x):
        for i, stage in enumerate(self.stages):
            x = stage(F.dropout(F.max_pool2d(x, 2) if i else x, self.p, self.training))
        x = F.relu(self.conv_last(x)).mean((2, 3))
        return self.fc(F.dropout(x, self.p, self.training))


def network_state(model) -> list[torch.Tensor]:
    """The executor model's state tensors in network order: stem, block, transition, ..., head."""
    parts = [model.stem]
    for i, block in enumerate(model.blocks):
        parts.append(block)
        if i < len(model.transitions):
            parts.append(model.transitions[i])
    parts.append(model.head)
    return [t for part in parts for t in part.state_dict().values()]
