"""Run analysis: DataFrames in, tables and figures out (top-K, Pareto fronts, progress,
failures, comparisons, the HTML report).
"""
