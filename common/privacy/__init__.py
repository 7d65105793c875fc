"""Differential privacy: the accountant and the run's privacy plan, the site ledger, per-sample clipping, the patient sampler, site keys."""
