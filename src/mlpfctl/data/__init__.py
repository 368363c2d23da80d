"""Particle-flow data: generation (Pythia8 + parametric detector), readers, datasets, batching."""
