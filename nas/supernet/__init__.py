"""Weight-sharing supernet of the MnasNet space (SPOS, Guo et al., arXiv:1904.00420).

Train one network that holds every choice of the space (:func:`train_supernet`, resumable,
checkpointed every epoch), then score any child without training it: :func:`score_child` cuts its
weights out (:func:`extract` returns ``space.build(arch)`` loaded with them), recalibrates its BN
statistics and measures its validation accuracy::

    from nas.evaluation.data import load_dataset
    from nas.supernet import SupernetOptions, load_supernet, score_child, train_supernet

    data = load_dataset("digits", val_fraction=0.2, seed=0)
    train_supernet(space, data, SupernetOptions(), "supernet/")
    supernet, info = load_supernet("supernet/")
    child, accuracy = score_child(supernet, space.sample(rng), data)

How the choices share weights and BN: :mod:`nas.supernet.model`. The checkpoint folder:
:mod:`nas.supernet.checkpoint`. Ranking quality against stand-alone training:
``benchmarks/supernet_rank.py``.
"""

from __future__ import annotations

from nas.supernet.checkpoint import load_supernet
from nas.supernet.model import SuperNet, extract
from nas.supernet.options import SupernetOptions
from nas.supernet.score import recalibrate_bn, score_child
from nas.supernet.train import sandwich_archs, train_supernet

__all__ = ["SuperNet", "SupernetOptions", "extract", "train_supernet", "load_supernet",
           "recalibrate_bn", "score_child", "sandwich_archs"]
