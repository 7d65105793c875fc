"""A published generator: safetensors artifacts, the model card, sampling, sample grids, synthetic DICOM and the cxr-generate CLI."""
