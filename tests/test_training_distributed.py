"""The process context: a single process without torchrun, and a real two-process gloo run."""

from __future__ import annotations

import copy
import importlib
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from esrforge.training.distributed import TORCHRUN_VARIABLES, DistributedContext, unwrap_model
from esrforge.training.ema import ModelEMA


@pytest.fixture
def no_torchrun(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_single_process_context(no_torchrun: pytest.MonkeyPatch) -> None:
    model = nn.Linear(2, 2)
    with DistributedContext.from_env([]) as ctx:
        assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
        assert ctx.device == torch.device("cpu")
        assert ctx.wrap(model) is model
        value = torch.tensor([1, 3])
        mean = ctx.all_reduce_mean(value)
        assert mean.dtype == torch.float32 and mean.tolist() == [1.0, 3.0]
        ctx.barrier()
    assert not torch.distributed.is_initialized()


@pytest.mark.parametrize(
    ("env", "message"),
    [({"RANK": "0"}, "expected integer"), ({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "not in")],
)
def test_bad_torchrun_environment(no_torchrun: pytest.MonkeyPatch, env: dict[str, str], message: str) -> None:
    for name, value in env.items():
        no_torchrun.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        DistributedContext.from_env([])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 1, 1))


def _worker(rank: int, world_size: int, port: int, out: Path) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)  # a forked child must not use the OpenMP pool of its parent
    torch.manual_seed(rank)  # different initial weights: both ways must start from rank 0's
    with DistributedContext.from_env([]) as ctx:
        net = _net()
        manual = copy.deepcopy(net).to(memory_format=torch.channels_last)
        ddp = ctx.wrap(net)
        for buffer in manual.buffers():  # per-rank values, for broadcast_parameters to overwrite
            buffer.fill_(rank + 1)
        ctx.broadcast_parameters(manual)
        start = {k: v.clone() for k, v in manual.state_dict().items()}
        ema = ModelEMA(ddp, decay=0.5)
        # with a gradient penalty's double backward: averaged after it (flat) and during it (bucketed)
        flat, bucketed = copy.deepcopy(manual), copy.deepcopy(manual)
        reducer = ctx.gradient_reducer(bucketed, bucket_bytes=16)  # several buckets
        assert reducer is not None and len(reducer.buckets) > 2
        models = (ddp, manual, flat, bucketed)
        optimizers = [torch.optim.SGD(m.parameters(), lr=0.1) for m in models]
        for _ in range(3):
            batch = torch.randn(3, 2, 5, 5, requires_grad=True)  # each rank its own data
            for model, optimizer in zip(models, optimizers, strict=True):
                optimizer.zero_grad()
                output = model(batch)
                loss = output.pow(2).mean()
                if model in (flat, bucketed):
                    (grad,) = torch.autograd.grad(output.sum(), batch, create_graph=True)
                    loss = loss + grad.pow(2).mean()
                if model is bucketed:
                    reducer.arm()
                loss.backward()
                if model is bucketed:
                    reducer.finish()
                elif model is not ddp:
                    ctx.average_gradients(model)
                optimizer.step()
            ema.update(ddp)
        ctx.barrier()
        result = {
            "start": start,
            "ddp": dict(unwrap_model(ddp).named_parameters()),
            "manual": dict(manual.named_parameters()),
            "flat": dict(flat.named_parameters()),
            "bucketed": dict(bucketed.named_parameters()),
            "ema": dict(ema.module.named_parameters()),
            "mean": ctx.all_reduce_mean(torch.tensor(float(rank))),
            "is_main": ctx.is_main,
        }
        torch.save(result, out / f"rank{rank}.pt")


def test_two_gloo_processes_stay_in_step(tmp_path: Path) -> None:
    # fork, where there is one, lets the workers share this process's imports (torch, and the
    # torch._dynamo that DistributedDataParallel imports), which keeps the test to seconds
    fork = "fork" in mp.get_all_start_methods()
    if fork:
        importlib.import_module("torch._dynamo")
    method = "fork" if fork else "spawn"
    workers = mp.start_processes(
        _worker, args=(2, _free_port(), tmp_path), nprocs=2, join=False, start_method=method
    )
    deadline = time.monotonic() + 120
    while not workers.join(timeout=1):
        if time.monotonic() > deadline:
            for process in workers.processes:
                process.kill()
            pytest.fail("the two worker processes did not finish within 120 s")
    first, second = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert first["ddp"].keys() == first["ema"].keys() and not any("module." in k for k in first["ema"])
    # parameters stay identical; BatchNorm statistics are per process after the last forward
    for key in ("start", "ddp", "manual", "flat", "bucketed", "ema"):
        for name, value in first[key].items():
            assert torch.equal(value, second[key][name]), (key, name)
    for name, value in first["ddp"].items():  # manual averaging matches DDP
        torch.testing.assert_close(first["manual"][name], value, msg=name)
    for name, value in first["flat"].items():  # bucketed reduction during the backward: the same sums
        assert torch.equal(first["bucketed"][name], value), name
    assert not torch.equal(first["flat"]["0.weight"], first["manual"]["0.weight"])  # the penalty counted
    assert first["mean"].item() == second["mean"].item() == 0.5
    assert (first["is_main"], second["is_main"]) == (True, False)
