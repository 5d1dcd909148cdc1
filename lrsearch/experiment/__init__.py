"""Running experiments: the config (TOML, validated at the edge), the runner that makes each
(strategy, budget, seed) run, the SQLite store every trial lands in as it finishes, the executors
(local, Ray), replay of recorded curves, provenance, and the real NNI experiment.

May import `lrsearch.search` and `lrsearch.training`; knows nothing of tables, figures or reports.
"""
