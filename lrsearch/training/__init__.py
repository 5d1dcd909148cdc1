"""Training one trial: CIFAR-10 on the device, the networks, LR schedules, tasks and the trainer.

The bottom layer: imports nothing else of lrsearch, and knows nothing of search libraries.
`trainer.train(task, ...)` trains one model under one schedule and returns its curve.
"""
