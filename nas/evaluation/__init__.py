"""One child, end to end and Ray-free: datasets, proxy training, parameters and MACs, and
``evaluate_arch`` (cost, latency, training, reward) with its evaluators.
"""
