"""Server side: the Flower ServerApp, generator training, checkpoints and publishing."""
