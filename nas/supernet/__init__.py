"""Weight-sharing supernets for any space that has the hook (SPOS, Guo et al., arXiv:1904.00420).

A space provides its supernet (:meth:`nas.space.Space.supernet`, the contract in
:mod:`nas.supernet.base`: ``mnasnet``, ``nasbench201``, or a user's space); everything else is
shared. Train it once (:func:`train_supernet`, resumable, checkpointed every epoch), then score
any child without training it: :func:`score_child` cuts its weights out (:func:`extract` returns
``space.build(arch)`` loaded with them), recalibrates its BN statistics and measures its
validation accuracy and loss::

    from nas.evaluation.data import load_dataset
    from nas.supernet import SupernetOptions, load_supernet, score_child, train_supernet

    data = load_dataset("digits", val_fraction=0.2, seed=0)
    train_supernet(space, data, SupernetOptions(), "supernet/")
    supernet, info = load_supernet("supernet/", space)
    child, accuracy, loss = score_child(supernet, space.sample(rng), data)

How MnasNet's choices share weights and BN: :mod:`search_spaces.mnasnet_supernet`;
NAS-Bench-201's: :mod:`search_spaces.nb201_supernet`. The checkpoint folder:
:mod:`nas.supernet.checkpoint`. Ranking quality against stand-alone training:
``benchmarks/supernet_rank.py``.

The names below are imported on first use, so that a space's supernet module can import
:mod:`nas.supernet.base` without the training machinery (nor an import cycle).
"""

from __future__ import annotations

from typing import Any

__all__ = ["SuperNet", "SupernetModule", "SupernetOptions", "ChildScore", "extract",
           "make_supernet", "train_supernet", "load_supernet", "recalibrate_bn", "score_child",
           "sandwich_archs"]


def __getattr__(name: str) -> Any:
    if name == "SuperNet":  # the MnasNet space's supernet, by its name before issue 23
        from search_spaces.mnasnet_supernet import MnasNetSupernet

        return MnasNetSupernet
    if name not in __all__:  # submodules too: ``from nas.supernet import base`` imports it
        raise AttributeError(f"module 'nas.supernet' has no attribute {name!r}")
    import nas.supernet.base as base
    import nas.supernet.checkpoint as checkpoint
    import nas.supernet.options as options
    import nas.supernet.score as score
    import nas.supernet.train as train

    module = next(m for m in (base, checkpoint, options, score, train) if name in m.__all__)
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted(__all__)
