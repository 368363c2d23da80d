"""Process launch: rank/world from torchrun or SLURM, and local multi-process launch."""
