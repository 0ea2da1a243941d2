import pytest
import torch

from bench.errors import BenchError
from bench.measure.engine import autocast_context, build_optimizer, make_train_step
from bench.spec.datasets import DATASETS, FAMILIES
from bench.spec.models import MODELS, build_model, count_params, get_model_spec
from bench.spec.recipes import RECIPE_NAMES, BatchSize


@pytest.mark.parametrize("name,expected", [("fc", 6442), ("cnn", 6422), ("lenet", 62006),
                                           ("vgg11", 9_231_114), ("vgg16", 14_728_266)])
def test_parameter_counts(name: str, expected: int) -> None:
    assert count_params(build_model(name)) == expected == get_model_spec(name).params


def test_vgg_depths_are_named_honestly() -> None:
    convs = {n: sum(isinstance(m, torch.nn.Conv2d) for m in build_model(n).modules())
             for n in ("vgg11", "vgg16")}
    assert convs == {"vgg11": 8, "vgg16": 13}


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", list(MODELS))
def test_two_training_steps(name: str, precision: str, channels_last: bool) -> None:
    torch.manual_seed(0)
    spec = get_model_spec(name)
    model = build_model(name)
    x = torch.randn(4, *FAMILIES[spec.family].input_shape)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if precision == "bf16":
        x = x.to(torch.bfloat16)
    y = torch.tensor([0, 1, 2, 3])
    opt = build_optimizer(model, spec.recipe("seed"))
    before = [p.detach().clone() for p in model.parameters()]
    step = make_train_step(model, opt, None, torch.device("cpu"), precision, 0.0)
    losses = [step(x, y) for _ in range(2)]
    assert all(torch.isfinite(v) for v in losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    with autocast_context(torch.device("cpu"), precision):
        out = model(x)
    assert out.shape == (4, 10)


def test_compile_default_trains() -> None:
    torch.manual_seed(0)
    model = build_model("fc")
    compiled = torch.compile(model)
    opt = build_optimizer(model, get_model_spec("fc").recipe("seed"))
    step = make_train_step(compiled, opt, None, torch.device("cpu"), "fp32", 0.0)
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8) % 10
    first = step(x, y)
    for _ in range(3):
        last = step(x, y)
    assert torch.isfinite(last) and last < first


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_states_its_facts(name: str) -> None:
    """A model's file says everything the harness needs: recipes, datasets, targets."""
    spec = get_model_spec(name)
    assert spec.family in FAMILIES
    for recipe in RECIPE_NAMES:
        assert spec.recipe(recipe).name == recipe
        assert spec.recipe(recipe, "cuda").name == recipe
    for dataset in spec.datasets:
        assert DATASETS[dataset].family == spec.family
        assert 0 < spec.targets[dataset] < 1
    assert spec.default_dataset == (spec.datasets[0] if spec.datasets else spec.family)


def test_device_specific_recipe_wins() -> None:
    spec = get_model_spec("fc")
    cuda_fast = spec.recipe("fast").__class__("fast", batch_size=1024)
    special = spec.__class__(**{**spec.__dict__, "name": "fc-x",
                                "recipes": {**spec.recipes, "fast@cuda": cuda_fast}})
    assert special.recipe("fast", "cuda").batch_size == 1024
    assert special.recipe("fast", "cpu") == spec.recipe("fast")
    with pytest.raises(BenchError, match="no settings"):
        special.recipe("slow")


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("device_type", ["cpu", "cuda"])
def test_every_recipe_evaluates_plainly(name: str, device_type: str, monkeypatch) -> None:
    """Whatever a recipe changes in training, its evaluation is the course's: the whole test
    set, in order, without augmentation, so its accuracy compares with the course's figure."""
    import types

    import numpy as np

    from bench.measure import runner

    configs = []
    monkeypatch.setattr(runner, "make_loader",
                        lambda kind, data, cfg: configs.append(cfg) or [(None, None)])
    plan = types.SimpleNamespace(device=torch.device("cpu"), cfg=types.SimpleNamespace(seed=0),
                                 rank=0, world=1)
    data = types.SimpleNamespace(train_y=np.zeros(10_000), test_y=np.zeros(10_000))
    spec = get_model_spec(name)
    for recipe_name in RECIPE_NAMES:
        recipe = spec.recipe(recipe_name, device_type)
        configs.clear()
        runner._loaders(plan, recipe, data, BatchSize(recipe.batch_size))
        test = next(c for c in configs if c.split == "test")
        assert (test.augment, test.shuffle, test.drop_last) == (False, False, False)
        assert test.world_size == 1  # never a shard: every rank evaluates the whole set
