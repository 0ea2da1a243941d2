"""One run measured: the runner, the training engine and its window clock, the throughput mode,
the reference probe, the summary, torchrun, FLOPs and the measured peak."""
