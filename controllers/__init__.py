"""Concrete controllers; importing this package registers them in ``nas.CONTROLLERS``."""
