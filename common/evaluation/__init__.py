"""Is the synthetic data worth using? Train-on-synthetic/test-on-real utility and fidelity metrics."""
