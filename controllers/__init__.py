"""Concrete controllers; importing this package registers them in ``nas.CONTROLLERS``.

``random`` (uniform baseline), ``evolution`` (regularized evolution, arXiv:1802.01548), ``rl``
(MnasNet's LSTM controller trained with PPO, arXiv:1807.11626 / arXiv:1707.06347), ``nsga2``
(multi-objective NSGA-II, Deb et al. 2002), ``tpe`` (Tree-structured Parzen Estimator, Bergstra
et al., NeurIPS 2011, through Optuna's sampler, arXiv:1907.10902) and ``bananas`` (a
neural-predictor ensemble over local neighbourhoods, arXiv:1910.11858). Their shared contract is
:class:`nas.search.controller.Controller`.
"""

from controllers import (  # noqa: F401  (registration side effects)
    bananas,
    evolution,
    nsga2,
    random,
    rl,
    tpe,
)
