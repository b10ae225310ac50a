"""Mask R-CNN's stages, one module each, named as in the paper and torchvision."""
