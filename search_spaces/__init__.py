"""Concrete search spaces; importing this package registers them in ``nas.SPACES``."""

from search_spaces import mnasnet, nasbench201  # noqa: F401  (registration side effects)
