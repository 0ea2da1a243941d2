"""Time one training step of a model under several settings, side by side in one process.

    python benchmarks/step_time.py cnn bf16:cl:256:1 fp32:nc:256:2 [--profile]

Each spec is precision:layout:batch:threads (layout cl = channels-last, nc = NCHW; append
:compile to wrap the model in torch.compile). A step is forward, loss, backward and the
optimizer update of the model's `fast` recipe; synthetic inputs, so no loader cost. Prints the
median ms/step over 7 windows of 5 steps after 3 warm-up steps, images/s, and GFLOP/s from the
counted training FLOPs; --profile adds torch.profiler's top ops for the last spec.
"""

from __future__ import annotations

import argparse
import time

import torch

from bench.defaults import precision as precision_spec
from bench.measure.engine import build_optimizer, make_train_step
from bench.measure.flops import input_shape, train_flops_per_image
from bench.spec.models import build_model, get_model_spec


def make_step(name: str, precision: str, channels_last: bool, batch: int, compiled: bool):
    torch.manual_seed(0)
    model = build_model(name)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(model, get_model_spec(name).recipe("fast"))
    run_model = torch.compile(model) if compiled else model
    step = make_train_step(run_model, opt, None, torch.device("cpu"), precision, 0.0)
    x = torch.randn(batch, *input_shape(name))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x = x.to(precision_spec(precision).input_dtype)
    y = torch.randint(0, 10, (batch,))
    return lambda: step(x, y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("specs", nargs="+")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    flops = train_flops_per_image(args.model)
    for spec in args.specs:
        precision, layout, batch, threads, *rest = spec.split(":")
        torch.set_num_threads(int(threads))
        run = make_step(args.model, precision, layout == "cl", int(batch), "compile" in rest)
        t0 = time.perf_counter()
        for _ in range(3):
            run()
        warm = time.perf_counter() - t0
        times = []
        for _ in range(7):
            t = time.perf_counter()
            for _ in range(5):
                run()
            times.append((time.perf_counter() - t) / 5)
        times.sort()
        med = times[3]
        b = int(batch)
        print(f"{args.model} {spec}: {med * 1e3:.2f} ms/step (min {times[0] * 1e3:.2f}), "
              f"{b / med:,.0f} img/s, {flops * b / med / 1e9:.0f} GFLOP/s, warm-up {warm:.1f}s",
              flush=True)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(10):
                run()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
