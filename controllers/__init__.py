"""Concrete controllers; importing this package registers them in ``nas.CONTROLLERS``.

``random`` (uniform baseline), ``evolution`` (regularized evolution, arXiv:1802.01548), ``rl``
(MnasNet's LSTM controller trained with PPO, arXiv:1807.11626 / arXiv:1707.06347) and ``nsga2``
(multi-objective NSGA-II, Deb et al. 2002). Their shared contract is
:class:`nas.controller.Controller`.
"""

from controllers import evolution, nsga2, random, rl  # noqa: F401  (registration side effects)
