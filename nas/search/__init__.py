"""The search side below the runner: the ``Controller``/``Proposal`` base (the spec every
controller follows), its JSON + weights-only state files, and ``bench`` (controllers on lookup
tables, no training).
"""
