"""SLURM system profiles (data), job requests, rendering and submission."""
