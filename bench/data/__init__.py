"""Images on their way to the model: the loaders, ffcv .beton files, the loader benchmark and
the sample grid."""
