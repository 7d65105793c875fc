"""The class-conditional GAN: models, losses, the discriminator and generator steps, DP feature matching, guided sampling."""
