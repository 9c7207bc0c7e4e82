"""The training step itself: gradient accumulation, no host reads in the hot loop, compiled steps."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from conftest import CUDA, compare_runs, tiny_gan_config
from esrforge.cli.common import run_program
from esrforge.cli.train import main
from esrforge.devices import select_device
from esrforge.fields.errors import OptionError
from esrforge.losses import translational
from esrforge.losses.perceptual import VggFeatures
from esrforge.options.loader import load_config
from esrforge.training.compiled import slow_steps
from esrforge.training.distributed import DistributedContext
from esrforge.training.experiment import ExperimentDirs
from esrforge.training.trainer import Trainer


def make_trainer(
    tmp_path: Path, *overrides: str, batch_independent: bool = False, without: tuple[str, ...] = ()
) -> Trainer:
    """The tiny GAN config's trainer with every loss on from step 0 but those of the types ``without``;
    ``batch_independent``: without the random draws that depend on how a batch is split (the
    translational loss, D's input noise)."""
    path = tiny_gan_config(tmp_path)
    raw = yaml.safe_load(path.read_text())
    dropped = {*without, *(["translational"] if batch_independent else [])}
    raw["train"]["losses"] = [loss for loss in raw["train"]["losses"] if loss["type"] not in dropped]
    for loss in raw["train"]["losses"]:
        loss["after"] = 0
        if batch_independent and loss["type"] == "gan":
            loss["noise"] = 0.0
    if batch_independent:
        raw["networks"]["discriminator"]["image_size"] = raw["datasets"]["train"]["target_size"]
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path, list(overrides))
    dist = DistributedContext(device=select_device(config.gpu_ids))
    return Trainer(config, ExperimentDirs(tmp_path / "run"), None, dist)


def assert_updates_close(
    trained: torch.nn.Module, reference: torch.nn.Module, initial: dict[str, torch.Tensor]
) -> None:
    """``trained``'s weights moved from ``initial`` as ``reference``'s did, within 1% of each tensor's
    update: Adam moves a weight whose gradient is near 0 by up to lr on rounding alone."""
    for name, value in reference.state_dict().items():
        difference = (trained.state_dict()[name] - value).norm()
        assert difference <= 0.01 * (value - initial[name]).norm() + 1e-7, name


def batch(size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A random LR/HR pair of tiles: 24 px LR, 96 px HR."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(size, 3, 24, 24, generator=generator), torch.rand(size, 3, 96, 96, generator=generator)


def gradients(trainer: Trainer) -> dict[str, torch.Tensor]:
    nets = {"G": trainer.nets.generator.net}
    if trainer.nets.discriminator is not None:
        nets["D"] = trainer.nets.discriminator.net
    return {
        f"{k}.{n}": p.grad.clone()
        for k, net in nets.items()
        for n, p in net.named_parameters()
        if p.grad is not None
    }


@pytest.mark.parametrize("order", ["[discriminator,generator]", "[generator,discriminator]"])
def test_two_accumulated_half_batches_give_the_gradients_of_one_batch(tmp_path, order):
    common = [f"train.step_order={order}"]
    lq, hq = batch(4)
    whole = make_trainer(tmp_path / "a", *common, batch_independent=True)
    split = make_trainer(tmp_path / "b", *common, "train.accumulate_steps=2", batch_independent=True)
    split.nets.generator.net.load_state_dict(whole.nets.generator.net.state_dict())
    assert whole.nets.discriminator is not None and split.nets.discriminator is not None
    split.nets.discriminator.net.load_state_dict(whole.nets.discriminator.net.state_dict())
    one = whole.runner.run([(lq, hq)], step=0)
    two = split.runner.run([(lq[:2], hq[:2]), (lq[2:], hq[2:])], step=0)
    a, b = gradients(whole), gradients(split)
    assert a.keys() == b.keys() and any(k.startswith("D.") for k in a)
    # float sums over 4 samples and over 2 + 2 round differently: up to 3e-5 of the norm in D's first
    # bias on an AVX-512 AMD CPU (oneDNN's reduction order), where a lost or doubled batch would be ~50%
    for name, grad in a.items():
        assert (b[name] - grad).norm() <= 1e-4 * grad.norm(), name
    for key, value in one.values.items():  # logged losses are the means over the accumulated batches
        torch.testing.assert_close(two.values[key], value, rtol=1e-4, atol=1e-6, msg=key)
    assert set(two.skipped) == {"generator", "discriminator"} and not any(two.skipped.values())


def test_accumulating_runs_resume_exactly_and_count_optimiser_steps(tmp_path):
    config = tiny_gan_config(tmp_path, niter=6)
    common = ["train.accumulate_steps=2", "logger.use_tb_logger=false"]
    assert run_program(lambda: main(["-opt", str(config), "--set", "name=straight", *common])) == 0
    resumed = ["name=resumed", "path.resume_state=auto", *common]
    assert run_program(lambda: main(["-opt", str(config), "--set", *resumed, "train.niter=3"])) == 0
    assert run_program(lambda: main(["-opt", str(config), "--set", *resumed])) == 0
    experiments = tmp_path / "experiments"
    log = (experiments / "straight" / "train.log").read_text()
    assert "batch 2 per process x 2 accumulated (4 per optimiser step); steps 0 to 6" in log
    assert sorted(p.name for p in (experiments / "straight" / "training_state").iterdir()) == [
        "3.state",
        "6.state",
    ]
    compare_runs(experiments / "straight", experiments / "resumed", 6)


@contextlib.contextmanager
def no_host_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Make every read of a tensor's value on the host fail, except the translational loss's CPU draws."""
    reads: list[str] = []
    draw = translational.randint

    def cpu_draw(*args: object, **kwargs: object) -> torch.Tensor:
        value = draw(*args, **kwargs)  # type: ignore[arg-type]
        value.cpu_draw = True  # type: ignore[attr-defined]
        return value

    monkeypatch.setattr(translational, "randint", cpu_draw)
    for name in ("__bool__", "__float__", "__int__", "__index__", "item", "tolist", "numpy"):
        original = getattr(torch.Tensor, name)

        def guarded(
            self: torch.Tensor, *args: object, _name: str = name, _original: object = original
        ) -> object:
            if not getattr(self, "cpu_draw", False):
                reads.append(_name)
                raise AssertionError(f"Tensor.{_name} in the training step")
            return _original(self, *args)  # type: ignore[operator]

        monkeypatch.setattr(torch.Tensor, name, guarded)
    yield reads
    monkeypatch.undo()


@pytest.mark.parametrize("skip", [False, True], ids=["finite", "nonfinite"])
def test_a_training_step_reads_no_tensor_value_on_the_host(tmp_path, monkeypatch, skip):
    trainer = make_trainer(tmp_path, "train.grad_clip=1.0", "train.accumulate_steps=2")
    before = {k: v.clone() for k, v in trainer.nets.generator.net.state_dict().items()}
    ema_before = {k: v.clone() for k, v in trainer.ema.module.state_dict().items()}  # type: ignore[union-attr]
    lq, hq = batch(2)
    if skip:
        lq = lq.clone()
        lq[0, 0, 0, 0] = float("nan")
    with no_host_reads(monkeypatch) as reads:
        result = trainer.runner.run([(lq, hq), batch(2, seed=1)], step=5)
        assert trainer.ema is not None
        trainer.ema.update(trainer.nets.generator.net, taken=~result.skipped["generator"])
        trainer.guard.record(5, result.skipped)
    assert not reads
    assert [bool(flag) for flag in result.skipped.values()] == [skip, skip]
    after = trainer.nets.generator.net.state_dict()
    unchanged = all(torch.equal(before[k], after[k]) for k in before)
    assert unchanged == skip
    assert all(torch.equal(ema_before[k], v) for k, v in trainer.ema.module.state_dict().items()) == skip
    if skip:
        step = trainer.nets.generator.optimizer.state_dict()["state"][0]["step"]
        assert float(step) == 0  # a skipped fused-Adam step leaves its step count too


def test_a_compiled_step_trains_like_the_eager_one(tmp_path, monkeypatch, logs):
    traced: list[bool] = []  # whether each call of the perceptual loss's VGG ran inside torch.compile
    vgg_forward = VggFeatures.forward
    monkeypatch.setattr(
        VggFeatures,
        "forward",
        lambda self, x: traced.append(torch.compiler.is_compiling()) or vgg_forward(self, x),
    )
    eager = make_trainer(tmp_path / "a", batch_independent=True)
    compiled = make_trainer(tmp_path / "b", "train.compile=true", batch_independent=True)
    assert compiled.compiled and "not the discriminator (gradient_penalty differentiates" in logs.text
    compiled.nets.generator.net.load_state_dict(eager.nets.generator.net.state_dict())
    assert eager.nets.discriminator is not None and compiled.nets.discriminator is not None
    compiled.nets.discriminator.net.load_state_dict(eager.nets.discriminator.net.state_dict())
    initial = {k: v.clone() for k, v in eager.nets.generator.net.state_dict().items()}
    for step in range(2):
        inputs = [batch(2, seed=step)]
        a, b = eager.runner.run(inputs, step), compiled.runner.run(inputs, step)
        for key, value in a.values.items():
            torch.testing.assert_close(b.values[key], value, rtol=1e-3, atol=1e-5, msg=key)
    assert_updates_close(compiled.nets.generator.net, eager.nets.generator.net, initial)
    assert False in traced and True in traced  # the eager run's VGG, and the compiled one's


def test_cuda_graphs_are_for_compiled_cuda_runs_and_each_step_marks_its_start(tmp_path, monkeypatch, logs):
    with pytest.raises(OptionError, match=r"train\.cuda_graphs: expected false while compile is false"):
        load_config(tiny_gan_config(tmp_path / "bad"), ["train.compile=false", "train.cuda_graphs=true"])
    trainer = make_trainer(tmp_path, "train.cuda_graphs=true")
    assert "CUDA graphs are for CUDA; this run on cpu goes without them" in logs.text
    assert not trainer.runner.forwards.graphs and not trainer.compiled
    assert "cuda_graphs" not in trainer._out_of_memory_message()
    calls: list[str] = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: calls.append("mark"))
    generator = trainer.runner.forwards.generator
    trainer.runner.forwards.generator = lambda x: calls.append("G") or generator(x)
    trainer.runner.run([batch(2)], step=0)
    assert "mark" not in calls
    calls.clear()
    trainer.runner.forwards.graphs = True  # as on CUDA: each step marks its start before its first G call
    for step in range(2):
        trainer.runner.run([batch(2, seed=step), batch(2, seed=step + 1)], step=step)
        assert calls[0] == "mark" and calls.count("mark") == 1 and "G" in calls
        calls.clear()
    assert "or set train.cuda_graphs: false" in trainer._out_of_memory_message()
    assert slow_steps({0, 5}, graphs=False) == {0: "compiling", 5: "compiling"}
    assert slow_steps({0, 1, 5}, graphs=True) == {
        0: "compiling",
        1: "compiling",
        2: "recording the CUDA graphs",
        5: "compiling",
        6: "recording the CUDA graphs",
    }


@CUDA
@pytest.mark.parametrize(
    ("setting", "without"),
    [
        ([], ()),  # the recipe: its gradient penalty keeps D eager
        (["train.accumulate_steps=2"], ()),
        (["train.step_order=[generator,discriminator]"], ("gradient_penalty",)),  # D's graphs too
    ],
    ids=["recipe", "accumulated", "graphed-D"],
)
def test_cuda_graph_steps_train_like_compiled_ones(tmp_path, logs, setting, without):
    """The recipe's losses (translational, input noise, gradient penalty), with and without CUDA graphs;
    every step's logged values are read after the later steps replayed the graphs."""
    from torch._dynamo.utils import counters

    common = ["gpu_ids=[0]", "train.compile=true", *setting]
    plain = make_trainer(tmp_path / "a", *common, without=without)
    counters.clear()
    graphs = make_trainer(tmp_path / "b", *common, "train.cuda_graphs=true", without=without)
    assert graphs.runner.forwards.graphs and "torch.compile with CUDA graphs" in logs.text
    pairs = [(plain.nets.generator.net, graphs.nets.generator.net)]
    assert plain.nets.discriminator is not None and graphs.nets.discriminator is not None
    pairs.append((plain.nets.discriminator.net, graphs.nets.discriminator.net))
    for source, target in pairs:
        target.load_state_dict(source.state_dict())
    initial = [{k: v.clone() for k, v in source.state_dict().items()} for source, _ in pairs]
    accumulate = plain.train.accumulate_steps
    expected, results = [], []
    for step in range(4):
        inputs = [tuple(plain._to_device(t) for t in batch(2, seed=step + i)) for i in range(accumulate)]
        expected.append(plain.runner.run(inputs, step))
        results.append(graphs.runner.run(inputs, step))
    assert not counters["inductor"]["cudagraph_skips"], dict(counters["inductor"])
    for a, b in zip(expected, results, strict=True):
        for key, value in a.values.items():
            torch.testing.assert_close(b.values[key], value, rtol=1e-3, atol=1e-5, msg=key)
        assert not any(bool(flag) for flag in b.skipped.values())
    for (source, target), start in zip(pairs, initial, strict=True):
        assert_updates_close(target, source, start)
