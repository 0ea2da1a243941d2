"""The training-recipe type: `seed` reproduces the course exactly, `fast` is ours.

A recipe is a frozen dataclass; each model declares its own recipes in its model file (see
`bench.spec.models.registry.ModelSpec`). CLI flags override single fields with `with_overrides`,
and the result stores the recipe as run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bench.defaults import AUGMENT_PAD
from bench.errors import BenchError

RECIPE_NAMES = ("seed", "fast")


@dataclass(frozen=True)
class Recipe:
    name: str
    batch_size: int
    test_batch_size: int = 1000
    optimizer: str = "sgd"  # sgd | adam | adamw
    lr: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | onecycle
    warmup_frac: float = 0.25  # onecycle: fraction of steps spent rising to lr
    epochs: float = 1  # may be fractional for the fast recipes (stopped by steps)
    precision: str = "fp32"
    channels_last: bool = False
    compile: str = "none"
    loader: str = "torch"
    augment: bool = False
    augment_pad: int = AUGMENT_PAD  # augment: translate up to this many pixels (0: flips only)
    norm: str = "mnist"  # key into bench.spec.datasets.NORMS
    label_smoothing: float = 0.0
    eval_every: int = 0  # evaluate every N steps (0: at the end of every epoch)
    stop_at_target: bool = False
    workers: int = 0  # torch loader processes (0: load in the training process)
    threads: int = 0  # CPU intra-op threads (0: torch's default); tiny models run best on 1
    fused_optimizer: bool = False  # one fused kernel for the update instead of a foreach chain
    # PyTorch's default TF32/cuDNN settings (matmul TF32 off, cuDNN TF32 on, no autotuning)
    # instead of the precision's: the seed recipes run as the course ran them
    torch_defaults: bool = False


def with_overrides(recipe: Recipe, **overrides: object) -> Recipe:
    """Apply the CLI flags that were given (None means 'not given')."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return replace(recipe, **given) if given else recipe


# DataLoader worker processes of the course's loaders, which the seed recipes reproduce: its
# CIFAR-10 notebooks (LeNet, VGG) build theirs with `num_workers=2`, as PyTorch's CIFAR-10
# tutorial does; its MNIST notebooks (FC, CNN) leave num_workers at 0 (loading in the training
# process).
COURSE_CIFAR10_WORKERS = 2
COURSE_MNIST_WORKERS = 0

# The course's MNIST training loop, which its FC and CNN notebooks share.
COURSE_MNIST_SEED = Recipe("seed", batch_size=64, test_batch_size=1000, optimizer="sgd", lr=0.01,
                           momentum=0.5, epochs=1, norm="mnist", workers=COURSE_MNIST_WORKERS,
                           torch_defaults=True)


@dataclass(frozen=True)
class BatchSize:
    """A run's batch, held in one place from the recipe on: the global size (what one step of
    all ranks together trains on) and its even split over `world` processes. A batch that does
    not divide among the ranks is refused (a silently dropped remainder would train on fewer
    images than the result says)."""

    total: int
    world: int = 1

    def __post_init__(self) -> None:
        if self.total < self.world:
            raise BenchError(f"batch size {self.total} is smaller than the world size "
                             f"{self.world}")
        if self.total % self.world:
            raise BenchError(f"batch size {self.total} does not divide among {self.world} "
                             f"processes ({self.total % self.world} left over): give a "
                             f"multiple of {self.world}")

    @property
    def per_rank(self) -> int:
        """Each rank's share: its loader's batch and its step's images."""
        return self.total // self.world
