"""From the store to what a reader sees: pandas tables (`tables`), seaborn figures (`figures`),
REPORT.md (`report`), and the budget tables of a replay (`budgets`).

May import `lrsearch.experiment`, `lrsearch.search` and `lrsearch.training`; reads results only
through the store and tables, and nothing below imports it.
"""
