"""MnasNet's published shapes: channel rounding and stride-2 stages at an input size, and the
op choices' block types.

:func:`round_channels` is the ``make_divisible`` rule of the MobileNet, MnasNet and timm reference
code; :func:`resolve_strides` decides which stride-2 stages (stem included) keep stride 2 at an
input size under the space option ``strides`` (``"auto"`` or ``"published"``; the rule is spelt out
in :mod:`search_spaces.mnasnet`).
"""

from __future__ import annotations

from collections.abc import Sequence

from nas.errors import UsageError

__all__ = ["STRIDE_MODES", "OP_CHOICES", "FULL_STRIDES_FROM", "round_channels", "kept_reductions",
           "resolve_strides"]

STRIDE_MODES = ("auto", "published")
# op choice -> (block type, expansion); the ``b{i}.op`` options of the space
OP_CHOICES = {
    "conv": ("conv", 1),
    "sepconv": ("sepconv", 1),
    "mbconv3": ("mbconv", 3),
    "mbconv6": ("mbconv", 6),
}
FULL_STRIDES_FROM = 64  # input size (px) from which "auto" keeps the published stride-2 stages


def round_channels(channels: float, divisor: int = 8) -> int:
    """Channels rounded as MobileNet's, MnasNet's and timm's ``make_divisible`` round them.

    The nearest multiple of ``divisor`` (halves round up), at least ``divisor``, and never more
    than 10% below ``channels`` (then one ``divisor`` more): 18 -> 24 (16 would be 11% less),
    30 -> 32, 12 -> 16, 448 -> 448.
    """
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * channels:
        rounded += divisor
    return rounded


def kept_reductions(input_size: int, reductions: int, mode: str = "auto") -> int:
    """How many of ``reductions`` stride-2 stages keep stride 2 at ``input_size``.

    ``published``: all. ``auto``: all at 64 px and above (at most ``floor(log2(input_size))``), and
    ``floor(log2(input_size / 4))`` below (features of at least 4x4).
    """
    if mode == "published":
        return reductions
    if input_size >= FULL_STRIDES_FROM:
        return min(reductions, input_size.bit_length() - 1)
    return min(reductions, max(0, (input_size // 4).bit_length() - 1))


def resolve_strides(
    block_strides: Sequence[int], input_size: int, mode: str
) -> tuple[int, list[int]]:
    """Stem stride and block strides at ``input_size``: the earliest stride-2 stages that
    :func:`kept_reductions` does not keep get stride 1. ``published`` refuses (UsageError) an input
    smaller than ``2**n`` for ``n`` stride-2 stages."""
    strides = [2, *block_strides]
    reductions = [i for i, s in enumerate(strides) if s == 2]
    n = len(reductions)
    if mode == "published" and input_size < 2**n:
        raise UsageError(
            f"mnasnet option strides='published': input_size={input_size} is too small for {n} "
            f"stride-2 stages (stem included), which need input_size >= {2**n}; "
            "strides='auto' drops the earliest ones"
        )
    for i in reductions[: n - kept_reductions(input_size, n, mode)]:
        strides[i] = 1
    return strides[0], strides[1:]
