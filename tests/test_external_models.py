"""Models and suites from outside the package: an installed plugin (entry point), a module path,
timm, and a suite file; through `bench run`, `bench suite` and `bench ci`, with one line and
exit 2 for each mistake. The public API (`from bench import ModelSpec, ...`) is kept here too.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch.nn as nn

from bench.cli import main
from bench.results import run_key
from bench.spec.models import count_params, external, get_model_spec
from bench.spec.runspec import RunConfig, validate_options
from bench.suites import policy as suites

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "tinyresnet"
TINY = ("--dataset", "synthetic-cifar10", "--device", "cpu", "--batch-size", "8", "--quiet",
        "--no-eval")

PLUGIN = '''
import torch.nn as nn

from bench import ModelSpec, register_model


class Tiny(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)
        self.head = nn.Linear(4, classes)

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)))


def _spec(**over):
    facts = dict(name="toynet", build=Tiny, family="cifar10", params=None,
                 description="one conv, one linear", recipes={})
    return ModelSpec(**{**facts, **over})


def spec():
    return _spec()


def registers():
    return register_model(_spec(name="toy-registers"))


def raises():
    raise ValueError("boom")


def not_a_spec():
    return 42


def wrong_family():
    return _spec(family="imagenet")


def wrong_classes():
    return _spec(build=lambda: Tiny(classes=7))
'''
ENTRY_POINTS = {"toynet": "toyplug:spec", "toy-registers": "toyplug:registers",
                "toy-raises": "toyplug:raises", "toy-notspec": "toyplug:not_a_spec",
                "toy-family": "toyplug:wrong_family", "toy-classes": "toyplug:wrong_classes",
                "toy-broken": "no_such_module_xyz:spec"}


def _dist_info(site: Path, name: str, version: str, entry_points: dict[str, str]) -> None:
    """What `pip install` leaves for a distribution: its metadata and its entry points."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{external.GROUP}]\n{lines}")


def _example_entry_point() -> dict[str, str]:
    """The example's entry point as its pyproject.toml declares it."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli", reason="Python 3.10 without tomli")
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    return dict(project["entry-points"][external.GROUP])


@pytest.fixture(autouse=True)
def _fresh_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test finds its models anew (their folders are its own tmp_path)."""
    monkeypatch.setattr(external, "_RESOLVED", {})
    monkeypatch.setattr(external, "_LAST_FAMILY", {})
    monkeypatch.setattr(suites, "_ensure_peak", lambda device: None)  # no peak probe in tests


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throwaway plugin `toyplug` 1.2.3 and the example installed as pip would: their
    dist-info folders on sys.path, the example's package beside them."""
    folder = tmp_path / "site"
    (folder / "toyplug").mkdir(parents=True)
    (folder / "toyplug" / "__init__.py").write_text(PLUGIN)
    _dist_info(folder, "toyplug", "1.2.3", ENTRY_POINTS)
    _dist_info(folder, "bench-tinyresnet", "0.1.0", _example_entry_point())
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    # installed: every process sees it, `bench ci`'s round processes too
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(folder), str(EXAMPLE), *filter(None, [os.environ.get("PYTHONPATH")])]))
    yield folder
    for name in ("toyplug", "tinyresnet", "tinyresnet.model"):
        sys.modules.pop(name, None)
    from bench.spec.models import unregister_model

    unregister_model("toy-registers")


def _docs(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]


# ----------------------------------------------------------------------------- public API
def test_public_api_imports_from_bench_without_torch() -> None:
    """`import bench` alone loads no torch (the reader verbs start without it); the API names
    resolve to the harness's own types, whatever the inner layout."""
    code = ("import sys, bench; assert 'torch' not in sys.modules, 'torch imported'; "
            "print(' '.join(bench.__all__))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {"ModelSpec", "Recipe", "register_model"} <= set(proc.stdout.split())

    import bench
    from bench import ModelSpec, Recipe, register_model
    from bench.spec.models.registry import ModelSpec as InnerSpec
    from bench.spec.models.registry import register_model as inner_register
    from bench.spec.recipes import Recipe as InnerRecipe

    assert (ModelSpec, Recipe, register_model) == (InnerSpec, InnerRecipe, inner_register)
    with pytest.raises(AttributeError):
        bench.NoSuchName  # noqa: B018


# ----------------------------------------------------------------------------- bench run
def test_entry_point_model_runs_with_the_generic_recipe(site, tmp_path: Path, capsys) -> None:
    """An installed plugin's model by its entry point name: the generic fast recipe (it has
    none), its parameters counted, FLOPs derived, its source and version recorded and keyed."""
    out = tmp_path / "out"
    assert main(["run", "--model", "toynet", *TINY, "--max-steps", "3", "--out", str(out)]) == 0
    assert "no accuracy target" in capsys.readouterr().out
    (doc,) = _docs(out)
    assert doc["status"] == "ok" and doc["config"]["recipe"] == "fast"
    assert doc["recipe"]["optimizer"] == "adamw" and doc["recipe"]["precision"] == "fp32"
    tiny = sys.modules["toyplug"].Tiny()
    assert doc["model"]["params"] == count_params(tiny) > 0
    assert doc["model"]["source"] == "entry point toyplug:toynet"
    assert doc["model"]["version"] == doc["config"]["model_version"] == "1.2.3"
    assert doc["summary"]["flops_per_image"] > 0
    assert run_key(doc["config"])[0] == "toynet@1.2.3"


def test_a_spec_the_function_registers_runs_as_checked(site, tmp_path: Path) -> None:
    assert main(["run", "--model", "toy-registers", *TINY, "--max-steps", "2", "--out",
                 str(tmp_path)]) == 0
    from bench.spec.models import MODELS

    assert MODELS["toy-registers"].source == "entry point toyplug:toy-registers"
    assert MODELS["toy-registers"].params == count_params(sys.modules["toyplug"].Tiny())


def test_a_model_without_seed_refuses_recipe_seed_in_one_line(site, bench_cli) -> None:
    code, err = bench_cli("run", "--model", "toynet", *TINY, "--recipe", "seed")
    assert code == 2 and len(err) == 1
    assert "recipe 'seed' has no settings for model 'toynet' (it has: fast)" in err[0]


def test_module_path_model_runs_with_its_own_recipe(site, tmp_path: Path) -> None:
    """`package.module:function` (the example, not installed): its own recipe, its file's
    hash as its version."""
    out = tmp_path / "out"
    assert main(["run", "--model", "tinyresnet.model:spec", *TINY, "--max-steps", "2", "--out",
                 str(out)]) == 0
    (doc,) = _docs(out)
    module = sys.modules["tinyresnet.model"]
    digest = hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest()[:12]
    assert doc["model"]["version"] == doc["config"]["model_version"] == digest
    assert doc["model"]["source"].startswith("module ")
    assert doc["model"]["source"].endswith("tinyresnet/model.py")
    assert doc["model"]["params"] == count_params(module.TinyResNet())
    assert doc["recipe"]["optimizer"] == "sgd"  # its own fast recipe, not the generic one


def test_module_in_the_current_folder_is_found(tmp_path: Path, monkeypatch) -> None:
    """The `bench` script has no current folder on sys.path; a module there is still found,
    and a changed file is a new version."""
    (tmp_path / "here_model.py").write_text(PLUGIN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "here_model", raising=False)
    first = get_model_spec("here_model:spec")
    assert first.source == "module here_model.py" and first.family == "cifar10"
    (tmp_path / "here_model.py").write_text(PLUGIN + "\n# changed\n")
    external.forget("here_model:spec")
    monkeypatch.delitem(sys.modules, "here_model")
    assert get_model_spec("here_model:spec").version != first.version
    sys.modules.pop("here_model", None)


def test_version_keys_external_models_only() -> None:
    """A model from outside the package is keyed with its version; a built-in one as before,
    so that every stored baseline still matches."""
    base = {"model": "fc", "dataset": "mnist", "recipe": "fast"}
    assert run_key(base)[0] == "fc" and run_key({**base, "model_version": None})[0] == "fc"
    old, new = run_key({**base, "model_version": "aaa"}), run_key({**base,
                                                                   "model_version": "bbb"})
    assert old != new and old[0] == "fc@aaa" and old[1:] == run_key(base)[1:]


@pytest.mark.parametrize("model,fragment", [
    ("toy-broken", "model 'toy-broken': loading entry point toyplug:toy-broken "
                   "(no_such_module_xyz:spec) raised ModuleNotFoundError"),
    ("toy-raises", "model 'toy-raises': toyplug:raises raised ValueError: boom"),
    ("toy-notspec", "model 'toy-notspec': entry point toyplug:toy-notspec returned int, "
                    "not a bench.ModelSpec"),
    ("toy-family", "model 'toy-family': family 'imagenet' is not one of mnist, cifar10"),
    ("toy-classes", "model 'toy-classes' gives output (2, 7) for a cifar10 batch "
                    "(2, 3, 32, 32); expected (2, 10), one score per class"),
    ("toyplug:no_such_function", "toyplug has no function 'no_such_function'"),
    ("no_such_pkg_xyz.mod:spec", "importing no_such_pkg_xyz.mod raised ModuleNotFoundError"),
    ("not a module:spec", "expected package.module:function"),
    ("resnet-nope", "unknown model 'resnet-nope'; choices: fc, cnn"),
])
def test_a_bad_model_is_one_line(site, bench_cli, model: str, fragment: str) -> None:
    code, err = bench_cli("run", "--model", model, *TINY, "--max-steps", "1")
    assert code == 2 and len(err) == 1, err
    assert fragment in err[0]


def test_external_names_pass_model_validation(site, capsys) -> None:
    """Name validation lets the external forms through to the resolver, lists installed
    plugins among the choices, and says what else a name may be."""
    for name in ("pkg.mod:fn", "timm:resnet18", "toynet"):
        validate_options(RunConfig(model=name))
    with pytest.raises(Exception, match=r"\(or package.module:function, timm:NAME\)"):
        validate_options(RunConfig(model="nope"))
    assert main(["run", "--help"]) == 0
    assert "toynet" in capsys.readouterr().out


# ----------------------------------------------------------------------------- timm
def _fake_timm(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """A stand-in timm that records how each model was asked for."""
    calls: list[dict] = []

    def create_model(name: str, **kw):
        calls.append({"name": name, **kw})
        return nn.Sequential(nn.Conv2d(kw["in_chans"], 4, 3), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(4, kw["num_classes"]))

    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(
        create_model=create_model, __version__="9.9.9"))
    return calls


def test_timm_model_is_built_for_the_datasets_family(monkeypatch) -> None:
    calls = _fake_timm(monkeypatch)
    mnist = get_model_spec("timm:tiny", "synthetic-mnist")
    assert mnist.family == "mnist" and calls[-1]["in_chans"] == 1
    cifar = get_model_spec("timm:other")  # no dataset: cifar10
    assert cifar.family == "cifar10" and calls[-1]["in_chans"] == 3
    assert calls[-1]["num_classes"] == 10 and calls[-1]["pretrained"] is False
    assert cifar.source == "timm 9.9.9" and cifar.version == "9.9.9"
    assert "fast" in cifar.recipes and "seed" not in cifar.recipes


def test_timm_missing_says_how_to_install(monkeypatch, bench_cli) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` fails as if not installed
    code, err = bench_cli("run", "--model", "timm:resnet18", *TINY, "--max-steps", "1")
    assert code == 2 and len(err) == 1
    assert "needs timm, which is not installed here: pip install timm" in err[0]


def test_timm_resnet18_runs(tmp_path: Path) -> None:
    pytest.importorskip("timm", reason="timm is not installed (pip install timm)")
    out = tmp_path / "out"
    assert main(["run", "--model", "timm:resnet18", *TINY, "--max-steps", "5", "--out",
                 str(out)]) == 0
    (doc,) = _docs(out)
    import timm

    assert doc["model"]["source"] == f"timm {timm.__version__}"
    assert doc["summary"]["flops_per_image"] > 0  # counted, as for the built-in models
    assert doc["model"]["params"] == count_params(timm.create_model("resnet18", num_classes=10))


# ----------------------------------------------------------------------------- suite files
SUITE = '''
description = "toy suite"

[defaults]
model = "toynet"
dataset = "synthetic-cifar10"
batch_size = 8
max_steps = 3
evaluate = false

[[run]]

[[run]]
max_steps = 2
gate = false

[ci]
budget_s = 0.3
warmup_steps = 1
window_steps = 2
'''


def test_suite_file_runs_and_gates(site, tmp_path: Path, monkeypatch, capsys) -> None:
    """`bench suite FILE` runs every run; `bench ci --suite FILE` records, then gates, the
    runs the file gates (throughput), its baseline in a folder of its own."""
    path = tmp_path / "toy.toml"
    path.write_text(SUITE)
    monkeypatch.chdir(tmp_path)  # the default baseline folder (results/baselines) is here
    assert main(["suite", str(path), "--device", "cpu", "--out", "suite-out", "--quiet"]) == 0
    docs = _docs(tmp_path / "suite-out")
    assert sorted((d["suite"], d["config"]["model"], d["config"]["max_steps"]) for d in docs
                  ) == [("toy", "toynet", 2), ("toy", "toynet", 3)]
    assert (tmp_path / "suite-out" / "suite-toy-latest.md").is_file()

    ci = ["ci", "--suite", str(path), "--device", "cpu", "--repeats", "2"]
    assert main([*ci, "--out", "ci-base", "--record-baseline"]) == 0
    (baseline,) = (tmp_path / "results" / "baselines" / "toy").glob("*.json")
    capsys.readouterr()
    code = main([*ci, "--out", "ci-gate", "--max-repeats", "2"])  # no round after the look
    out = capsys.readouterr().out
    assert code in (0, 1, 3), out  # pass, a (noise) slowdown, or too noisy: never bad input
    assert "toynet@1.2.3/synthetic-cifar10" in out and "no baseline" not in out
    gated = _docs(tmp_path / "ci-gate")
    assert len(gated) == 2 and {d["config"]["measure"] for d in gated} == {"throughput"}
    assert {d["config"]["max_steps"] for d in gated} == {3} and baseline.stat().st_size > 0


def test_example_suite_file_reads(site) -> None:
    runs, what = suites.file_configs(EXAMPLE / "suite.toml", on_gpu=False)
    assert what.startswith("tinyresnet on CIFAR-10") and len(runs) == 2
    assert [(c.model, c.recipe, c.precision) for c in runs] == [
        ("tinyresnet", "fast", None), ("tinyresnet", "fast", "fp32")]
    (gated,) = suites.file_configs(EXAMPLE / "suite.toml", on_gpu=False, gate=True)[0]
    assert (gated.measure, gated.evaluate, gated.threads, gated.budget_s) == (
        "throughput", False, 1, 20.0)


@pytest.mark.parametrize("text,fragment", [
    ('[[run]]\nmodel = "toynet"\nfoo = 1\n', "run 1: unknown key 'foo'; run options: model,"),
    ('[[run]]\nmodel = "toynet"\nbatch_size = 0\n',
     "run 1: batch_size: --batch-size must be positive"),
    ('[[run]]\nmodel = "toynet"\nmax_steps = "ten"\n',
     "run 1: max_steps: expected an integer, got 'ten'"),
    ('[[run]]\nmodel = "toynet"\nchannels_last = 1\n',
     "run 1: channels_last: expected true or false, got 1"),
    ('[[run]]\nmodel = "toynet"\n[[run]]\nmodel = "nosuch"\n',
     "run 2: model: unknown model 'nosuch'"),
    ('[[run]]\nmodel = "toy-raises"\n', "run 1: model: model 'toy-raises': toyplug:raises "
                                        "raised ValueError: boom"),
    ('[[run]]\nmodel = "fc"\ndataset = "cifar10"\n', "run 1: model 'fc' takes mnist-shaped"),
    ('[[run]]\nmodel = "toynet"\nrecipe = "seed"\n', "run 1: recipe 'seed' has no settings"),
    ('[[run]]\nmodel = "toynet"\ndevice = "cuda"\n',
     "run 1: device: set by the command (--device)"),
    ('[[run]]\ndataset = "cifar10"\n', "run 1: model: missing"),
    ('[defaults]\nmax_steps = -1\n[[run]]\nmodel = "toynet"\n',
     "defaults: max_steps: --max-steps must be positive"),
    ('runs = 1\n', "unknown key 'runs'; a suite file has: description, defaults, run, ci"),
    ('description = "only words"\n', "run: expected [[run]] tables"),
    ('[[run]\n', "not valid TOML"),
])
def test_a_bad_suite_file_is_one_line(site, tmp_path: Path, bench_cli, text: str,
                                      fragment: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    code, err = bench_cli("suite", str(path), "--device", "cpu", "--out", str(tmp_path))
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"bench: error: {path}: ") and fragment in err[0], err[0]


def test_suite_file_errors_name_the_file(tmp_path: Path, bench_cli) -> None:
    path = tmp_path / "gates-nothing.toml"
    path.write_text(textwrap.dedent('''
        [[run]]
        model = "fc"
        gate = false
    '''))
    code, err = bench_cli("ci", "--suite", str(path), "--device", "cpu", "--out",
                          str(tmp_path), "--record-baseline", "--baseline",
                          str(tmp_path / "b.json"))
    assert code == 2 and len(err) == 1 and f"{path}: every run has gate = false" in err[0]
    code, err = bench_cli("suite", str(tmp_path / "missing.toml"), "--device", "cpu")
    assert code == 2 and err == [f"bench: error: {tmp_path / 'missing.toml'}: no such suite file"]

