"""Site side: the Flower ClientApp and the cxr-client CLI."""
