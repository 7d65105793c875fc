"""Privacy audit of a published generator: memorization, nearest-neighbour distances, membership inference."""
