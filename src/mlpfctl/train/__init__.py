"""Training: the loop, optimisers and schedules, checkpoints, metrics, evaluation and export."""
