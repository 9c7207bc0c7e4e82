"""Seconds per training step of two gloo processes: gradients averaged after the backward (flat) against
averaged in buckets during it (GradientReducer, what train.py uses).

Run from the repository root: ``python bench/allreduce.py [--nb 23] [--steps 6]``. Each process trains an
RRDB 64/nb/32 x4 with L1 on its own random batch (1 x 24 px LR, one thread each), alternating the two
ways step by step so that both see the same machine load; the figure is the median step of each.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "codes"))

from esrforge.networks.rrdb import RRDBNet, RRDBNetOptions  # noqa: E402
from esrforge.training.distributed import DistributedContext  # noqa: E402


def worker(rank: int, port: int, nb: int, steps: int, out: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    os.environ["LOCAL_RANK"] = str(rank)
    torch.set_num_threads(1)
    with DistributedContext.from_env([]) as ctx:
        nets = {way: RRDBNet(RRDBNetOptions(nb=nb)) for way in ("flat", "bucketed")}
        reducer = ctx.gradient_reducer(nets["bucketed"])
        assert reducer is not None
        times: dict[str, list[float]] = {way: [] for way in nets}
        lq, hq = torch.rand(1, 3, 24, 24), torch.rand(1, 3, 96, 96)
        for step in range(steps + 1):
            for way, net in nets.items():
                ctx.barrier()
                start = time.perf_counter()
                net.zero_grad(set_to_none=True)
                loss = (net(lq) - hq).abs().mean()
                if way == "bucketed":
                    reducer.arm()
                loss.backward()
                if way == "bucketed":
                    reducer.finish()
                else:
                    ctx.average_gradients(net)
                if step:  # the first step of each warms up
                    times[way].append(time.perf_counter() - start)
        if ctx.is_main:
            torch.save({way: statistics.median(t) for way, t in times.items()}, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nb", type=int, default=23, help="RRDB blocks")
    parser.add_argument("--steps", type=int, default=6, help="timed steps of each way")
    args = parser.parse_args()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = Path(f"/tmp/esrforge_allreduce_{os.getpid()}.pt")
    mp.start_processes(worker, args=(port, args.nb, args.steps, out), nprocs=2, start_method="spawn")
    figures = torch.load(out)
    out.unlink()
    print(f"== 2 gloo processes, RRDB 64/{args.nb}/32 x4 L1 step, batch 1 x 24 px LR, 1 thread each")
    for way, seconds in figures.items():
        print(f"{way:>9} {seconds:8.3f} s/step")
    print(f"{'speed-up':>9} {figures['flat'] / figures['bucketed']:8.2f}x")


if __name__ == "__main__":
    main()
