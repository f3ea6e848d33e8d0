"""MnasNet's factorized hierarchical search space (Tan et al., arXiv:1807.11626, section 4).

The network is B blocks over a base skeleton (default: MobileNetV2's 7 blocks, arXiv:1801.04381).
Each block ``b{i}`` independently chooses (the paper's per-block sub-search space):

==============  ==========================================================================
label           options
==============  ==========================================================================
``b{i}.op``     ``conv`` (regular), ``sepconv`` (depthwise separable), ``mbconv3``, ``mbconv6``
``b{i}.kernel`` 3, 5
``b{i}.se``     0, 0.25 (squeeze-and-excitation ratio)
``b{i}.skip``   ``none``, ``identity`` (residual on every layer whose input and output shapes
                match; in a block where no layer matches, ``identity`` builds the same net)
``b{i}.filters`` output channels: base x {0.75, 1.0, 1.25} (x width_mult), each rounded as the
                reference code rounds (:func:`round_channels`); equal results are listed once
``b{i}.layers`` base repeats + {-1, 0, +1}, at least 1; equal results are listed once
==============  ==========================================================================

The options of ``filters`` and ``layers`` are the resulting channel and layer counts, so every
option builds a different network and :meth:`size` is exact.

Strides (option ``strides``): the MnasNet paper scales the input size of one network, so at
64 px and above presets and searched children keep the published stride-2 stages (stem included;
5 for MobileNetV2's skeleton: 224 -> 7x7 features, 112 -> 4x4, 64 -> 2x2) and their MACs scale
with the input area (MobileNetV2 at 112 px: 82 M, about 1/4 of its 301 M at 224 px).

- ``strides="auto"`` (the default): below 64 px only the last ``min(n, floor(log2(H / 4)))`` of
  the ``n`` stride-2 stages keep stride 2 and earlier ones get stride 1, so small inputs keep
  features of at least 4x4 (32 -> 3 stages, 4x4; 8 -> 1, 4x4). At 64 px and above all of them
  (with a custom skeleton of more than 6, the last ``floor(log2(H))``: the most that leave every
  stride-2 stage a map of 2x2 or more).
- ``strides="published"``: never changes a stride, and refuses (UsageError) an input smaller than
  ``2**n`` px, where a stride-2 stage would see a 1x1 map (32 px for 5 stages gives 1x1 features).

Presets ``mobilenet_v2``, ``mnasnet_a1`` and ``mnasnet_b1`` are block tables of the published
networks
built by the same builder as searched children; at 224x224 and 1000 classes their parameter counts
equal the reference implementations' (torchvision ``mobilenet_v2`` 3,504,872 and ``mnasnet1_0``
4,383,312; timm ``mnasnet_a1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nas._checks import MAX_INPUT_SIZE, check_choice, check_int, check_number
from nas.errors import UsageError
from nas.registry import register_space
from nas.space import Arch, Choice, LatencyUnit, Space
from search_spaces.blocks import ACTIVATIONS, BlockSpec, block_string, parse_block_string
from search_spaces.mnasnet_geometry import (
    OP_CHOICES,
    STRIDE_MODES,
    kept_reductions,
    resolve_strides,
    round_channels,
)

__all__ = ["MnasNetSpace", "SKELETONS", "PRESETS", "STRIDE_MODES", "round_channels",
           "kept_reductions"]

# name -> rows of (channels, repeats, stride); MobileNetV2 table 2 (arXiv:1801.04381)
SKELETONS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "mobilenet_v2": (
        (16, 1, 1),
        (24, 2, 2),
        (32, 3, 2),
        (64, 4, 2),
        (96, 3, 1),
        (160, 3, 2),
        (320, 1, 1),
    ),
}

# name -> (block strings, activation); stem 32, head 1280, dropout 0.2 for all three
PRESETS: dict[str, tuple[tuple[str, ...], str]] = {
    "mobilenet_v2": (
        (  # arXiv:1801.04381 table 2
            "ds_r1_k3_s1_c16_noskip",
            "ir_r2_k3_s2_e6_c24",
            "ir_r3_k3_s2_e6_c32",
            "ir_r4_k3_s2_e6_c64",
            "ir_r3_k3_s1_e6_c96",
            "ir_r3_k3_s2_e6_c160",
            "ir_r1_k3_s1_e6_c320",
        ),
        "relu6",
    ),
    "mnasnet_a1": (
        (  # arXiv:1807.11626 figure 7(a)
            "ds_r1_k3_s1_c16_noskip",
            "ir_r2_k3_s2_e6_c24",
            "ir_r3_k5_s2_e3_c40_se0.25",
            "ir_r4_k3_s2_e6_c80",
            "ir_r2_k3_s1_e6_c112_se0.25",
            "ir_r3_k5_s2_e6_c160_se0.25",
            "ir_r1_k3_s1_e6_c320",
        ),
        "relu",
    ),
    "mnasnet_b1": (
        (  # the MnasNet-B1 of the reference code (torchvision mnasnet1_0)
            "ds_r1_k3_s1_c16_noskip",
            "ir_r3_k3_s2_e3_c24",
            "ir_r3_k5_s2_e3_c40",
            "ir_r3_k5_s2_e6_c80",
            "ir_r2_k3_s1_e6_c96",
            "ir_r4_k5_s2_e6_c192",
            "ir_r1_k3_s1_e6_c320_noskip",
        ),
        "relu",
    ),
}

FILTER_MULTIPLIERS = (0.75, 1.0, 1.25)
LAYER_DELTAS = (-1, 0, 1)


def _unique(values: Sequence[int]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(values))


OPT = "mnasnet option "
# bounds that keep a typo from building a network that never finishes (MobileNetV2's skeleton:
# 7 rows, at most 4 repeats, at most 320 channels)
MAX_ROWS, MAX_REPEATS, MAX_CHANNELS = 16, 16, 4096


def _check_skeleton(skeleton: Any) -> tuple[tuple[int, int, int], ...]:
    if isinstance(skeleton, str):
        if skeleton not in SKELETONS:
            raise UsageError(
                f"mnasnet option skeleton={skeleton!r}: allowed names: {', '.join(SKELETONS)} "
                "or a list of [channels, repeats, stride] rows"
            )
        return SKELETONS[skeleton]
    rows = []
    if not isinstance(skeleton, Sequence) or not skeleton or len(skeleton) > MAX_ROWS:
        raise UsageError(f"mnasnet option skeleton: must be a name or a list of 1 to {MAX_ROWS} "
                         "rows")
    for i, row in enumerate(skeleton):
        if isinstance(row, dict):
            row = (row.get("channels"), row.get("repeats"), row.get("stride"))
        if not isinstance(row, Sequence) or len(row) != 3:
            raise UsageError(
                f"mnasnet option skeleton[{i}]={row!r}: expected [channels, repeats, stride]"
            )
        c = check_int(f"{OPT}skeleton[{i}].channels", row[0], maximum=MAX_CHANNELS)
        r = check_int(f"{OPT}skeleton[{i}].repeats", row[1], maximum=MAX_REPEATS)
        s = row[2]
        if s not in (1, 2) or isinstance(s, bool):
            raise UsageError(f"mnasnet option skeleton[{i}].stride={s!r}: allowed values: 1, 2")
        rows.append((c, r, s))
    return tuple(rows)


@register_space("mnasnet")
class MnasNetSpace(Space):
    """The MnasNet search space over a base skeleton.

    Args:
        input_size: input height and width (224 ImageNet, 32 CIFAR, 8 digits).
        num_classes: classifier outputs.
        in_channels: input channels (3 RGB, 1 grayscale).
        width_mult: multiplier on every channel count (stem, blocks; head only when > 1).
        stem_channels: stem convolution output channels (32).
        head_channels: 1x1 head convolution channels (1280).
        skeleton: ``"mobilenet_v2"`` or a list of ``[channels, repeats, stride]`` rows.
        activation: ``relu`` (MnasNet), ``relu6`` (MobileNetV2) or ``silu``.
        dropout: dropout before the classifier.
        strides: ``"auto"`` (published stride-2 stages at 64 px and above, fewer below) or
            ``"published"`` (never fewer; inputs under ``2**n`` px refused), see the module doc.
    """

    name = "mnasnet"

    def __init__(
        self,
        *,
        input_size: int = 224,
        num_classes: int = 1000,
        in_channels: int = 3,
        width_mult: float = 1.0,
        stem_channels: int = 32,
        head_channels: int = 1280,
        skeleton: Any = "mobilenet_v2",
        activation: str = "relu",
        dropout: float = 0.2,
        strides: str = "auto",
    ) -> None:
        rows = _check_skeleton(skeleton)
        options = {
            "input_size": check_int(OPT + "input_size", input_size, maximum=MAX_INPUT_SIZE),
            "num_classes": check_int(OPT + "num_classes", num_classes, maximum=100_000),
            "in_channels": check_int(OPT + "in_channels", in_channels, maximum=64),
            "width_mult": check_number(OPT + "width_mult", width_mult, maximum=8, strict=True),
            "stem_channels": check_int(OPT + "stem_channels", stem_channels,
                                       maximum=MAX_CHANNELS),
            "head_channels": check_int(OPT + "head_channels", head_channels,
                                       maximum=4 * MAX_CHANNELS),
            "skeleton": skeleton if isinstance(skeleton, str) else [list(r) for r in rows],
            "activation": check_choice(OPT + "activation", activation, tuple(ACTIVATIONS)),
            "dropout": check_number(OPT + "dropout", dropout, maximum=1, strict_max=True),
            "strides": check_choice(OPT + "strides", strides, STRIDE_MODES),
        }
        resolve_strides([r[2] for r in rows], options["input_size"], options["strides"])
        self._rows = rows
        super().__init__(self._declare(rows, options["width_mult"]), options=options)

    @staticmethod
    def _declare(rows: Sequence[tuple[int, int, int]], width: float) -> list[Choice]:
        decisions = []
        for i, (channels, repeats, _stride) in enumerate(rows, start=1):
            filters = _unique([round_channels(channels * width * m) for m in FILTER_MULTIPLIERS])
            layers = _unique([max(1, repeats + d) for d in LAYER_DELTAS])
            decisions += [
                Choice(f"b{i}.op", tuple(OP_CHOICES)),
                Choice(f"b{i}.kernel", (3, 5)),
                Choice(f"b{i}.se", (0.0, 0.25)),
                Choice(f"b{i}.skip", ("none", "identity")),
                Choice(f"b{i}.filters", filters),
                Choice(f"b{i}.layers", layers),
            ]
        return decisions

    # -- geometry -----------------------------------------------------------------------------
    def _strides(self, block_strides: Sequence[int]) -> tuple[int, list[int]]:
        """Stem stride and block strides at this input size (option ``strides``)."""
        return resolve_strides(block_strides, self.options["input_size"], self.options["strides"])

    def _width(self, channels: int) -> int:
        w = self.options["width_mult"]
        return channels if w == 1.0 else round_channels(channels * w)

    def _network_args(self) -> dict[str, Any]:
        o = self.options
        head = o["head_channels"]
        return {
            "in_channels": o["in_channels"],
            "num_classes": o["num_classes"],
            "stem_channels": self._width(o["stem_channels"]),
            "head_channels": head
            if o["width_mult"] <= 1
            else round_channels(head * o["width_mult"]),
            "dropout": o["dropout"],
        }

    def input_shape(self) -> tuple[int, int, int]:
        size = self.options["input_size"]
        return (self.options["in_channels"], size, size)

    # -- architectures -> block tables -> models -----------------------------------------------
    def block_table(self, arch: Arch) -> list[BlockSpec]:
        """The block table (one :class:`BlockSpec` per block) that ``arch`` selects."""
        arch = self.validate(arch)
        _, strides = self._strides([r[2] for r in self._rows])
        table = []
        for i, stride in enumerate(strides, start=1):
            op, expansion = OP_CHOICES[str(arch[f"b{i}.op"])]
            table.append(
                BlockSpec(
                    op=op,
                    kernel=int(arch[f"b{i}.kernel"]),
                    expansion=expansion,
                    se_ratio=float(arch[f"b{i}.se"]),
                    skip=arch[f"b{i}.skip"] == "identity",
                    channels=int(arch[f"b{i}.filters"]),
                    repeats=int(arch[f"b{i}.layers"]),
                    stride=stride,
                )
            )
        return table

    def preset_table(self, name: str) -> tuple[list[BlockSpec], str, int]:
        """Block table, activation and stem stride of a preset at this input size and width."""
        if name not in PRESETS:
            super().build_preset(name)  # raises the standard unknown-preset error
        strings, activation = PRESETS[name]
        specs = [parse_block_string(s) for s in strings]
        stem_stride, strides = self._strides([s.stride for s in specs])
        table = [
            BlockSpec(**{**s.to_dict(), "stride": st, "channels": self._width(s.channels)})
            for s, st in zip(specs, strides, strict=True)
        ]
        return table, activation, stem_stride

    def _stem_stride(self) -> int:
        return self._strides([r[2] for r in self._rows])[0]

    def build_table(
        self,
        table: Sequence[BlockSpec],
        activation: str | None = None,
        stem_stride: int | None = None,
    ) -> Any:
        """Build a network from any block table with this space's stem, head and options."""
        from search_spaces.blocks import MobileNetwork

        return MobileNetwork(
            list(table),
            activation=activation or self.options["activation"],
            stem_stride=self._stem_stride() if stem_stride is None else stem_stride,
            **self._network_args(),
        )

    def build(self, arch: Arch) -> Any:
        return self.build_table(self.block_table(arch))

    def presets(self) -> list[str]:
        return list(PRESETS)

    def build_preset(self, name: str) -> Any:
        table, activation, stem_stride = self.preset_table(name)
        return self.build_table(table, activation, stem_stride)

    def describe(self, arch: Arch) -> dict[str, Any]:
        table = self.block_table(arch)
        return {
            "block_table": [spec.to_dict() for spec in table],
            "block_strings": [block_string(spec) for spec in table],
            "stem": {
                "channels": self._network_args()["stem_channels"],
                "stride": self._stem_stride(),
            },
            "head_channels": self._network_args()["head_channels"],
            "activation": self.options["activation"],
        }

    def supernet(self, *, kernel: str = "shared") -> Any:
        """Every choice of this space in one network (SPOS, arXiv:1904.00420; OFA's elastic
        width, arXiv:1908.09791): :class:`search_spaces.mnasnet_supernet.MnasNetSupernet`.

        Args:
            kernel: ``shared`` (the 3x3 kernel is the centre of the 5x5) or ``separate`` (own
                3x3 and 5x5 weights, each with its own BN).
        """
        from search_spaces.mnasnet_supernet import MnasNetSupernet

        return MnasNetSupernet(self, kernel=kernel)

    def latency_units(self, arch: Arch) -> list[LatencyUnit]:
        from search_spaces.mnasnet_units import network_units

        return network_units(
            self.block_table(arch),
            stem_stride=self._stem_stride(),
            input_size=self.options["input_size"],
            activation=self.options["activation"],
            **self._network_args(),
        )
