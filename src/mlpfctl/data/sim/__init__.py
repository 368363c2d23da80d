"""Event generation (Pythia8) and the fast parametric CLIC-like detector simulation."""
