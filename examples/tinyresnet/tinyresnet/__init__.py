"""A small ResNet for CIFAR-10: an example of a model benchmarked from outside bench."""
