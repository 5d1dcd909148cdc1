"""Searching for a learning rate: the strategies (`strategies/`, one adapter per library), the objective
they all see (params -> trained trial), and the LR range test with its suggestion rules (`lr_finder`).

May import `lrsearch.training` only. A strategy knows nothing of torch; the objective is the one
place where a proposal becomes a training run.
"""
