"""Code shared by sites, server and audit: config, data layer, models, privacy accounting, artifacts."""
