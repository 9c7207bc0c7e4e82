"""The network contract, over every registered network: build, describe, forward, backward, save/load, tiling."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import torch

from esrforge.fields.convert import Resolver, convert
from esrforge.inference.tiling import upscale
from esrforge.networks import NETWORKS, NetworkOptions, build_network, load_generator, load_into

PACKAGE = Path(__file__).resolve().parents[1] / "codes" / "esrforge"

TINY: dict[str, dict[str, Any]] = {
    "RRDBNet": {"nf": 8, "nb": 1, "gc": 4},
    "SRVGGNetCompact": {"num_feat": 8, "num_conv": 2},
    "spandrel": {"arch": "SPAN", "params": {"num_in_ch": 3, "num_out_ch": 3, "feature_channels": 8}},
    "UNetDiscriminatorSN": {"num_feat": 8},
    "VGGDiscriminatorGN": {"nf": 8, "image_size": 32},
    "VGGDiscriminatorBN": {"nf": 8, "image_size": 32},
}
"""The smallest options of every registered network: a network added without an entry fails the test below."""

SCALES = {"RRDBNet": (1, 2, 4, 8), "SRVGGNetCompact": (1, 2, 3, 4), "spandrel": (2, 3, 4)}


def options_of(name: str, scale: int | None = None) -> NetworkOptions:
    """The tiny options of ``name`` read the way a config is (at ``scale`` for a generator)."""
    raw = {"type": name, **TINY[name]}
    if scale is not None:
        if name == "spandrel":
            raw["params"] = {**raw["params"], "upscale": scale}
        else:
            key = NETWORKS.get(name).options.scale_key
            raw[key] = scale
    options: NetworkOptions = convert(NetworkOptions, raw, "networks.generator", Resolver(Path.cwd()))
    return options


CASES = [(name, scale) for name in NETWORKS.names() for scale in SCALES.get(name, (None,))]


def test_every_registered_network_has_tiny_options() -> None:
    assert sorted(TINY) == NETWORKS.names()


@pytest.mark.parametrize(("name", "scale"), CASES, ids=[f"{n}-x{s}" for n, s in CASES])
def test_the_contract(tmp_path: Path, name: str, scale: int | None) -> None:
    torch.manual_seed(0)
    options = options_of(name, scale)
    description = options.describe()
    net = build_network(options)
    size = max(32, description.min_size)
    x = torch.rand(2, description.in_channels, size, size)
    out = net(x)
    generator = scale is not None
    if generator:
        assert description.scale == scale
        assert out.shape == (2, description.out_channels, size * scale, size * scale)
    else:
        assert out.shape[:2] == (2, 1)
    out.mean().backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert len(grads) >= len(list(net.parameters())) // 2  # (spandrel's SPAN keeps some unused)
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads[:1])
    assert all(torch.isfinite(g).all() for g in grads)

    path = tmp_path / "net.pth"
    torch.save(net.state_dict(), path)
    fresh = load_into(build_network(options), options, path)
    net.eval(), fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), net(x), rtol=0, atol=0)
    if not generator:
        return
    loaded = load_generator(path, options)
    assert loaded.description == description
    if description.tiling == "supported":
        image = torch.rand(description.in_channels, 40, 52)
        with torch.no_grad():
            whole = upscale(net, image, description=description)
            tiled = upscale(net, image, tile=16, pad=24, overlap=8, description=description)
        assert whole.shape == (description.out_channels, 40 * scale, 52 * scale)
        torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-4)


def _imported_packages(path: Path) -> set[str]:
    """The esrforge sub-packages a module imports (relative imports resolved from its own package)."""
    own = path.relative_to(PACKAGE).parts
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = list(own[:-1])[: len(own) - node.level]
            parts = base + (node.module.split(".") if node.module else [])
            if parts:
                found.add(parts[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("esrforge."):
            found.add(node.module.split(".")[1])
    return found


def test_the_packages_import_each_other_without_a_cycle() -> None:
    """Lower layers never import higher ones: fields < components < options < engines < cli."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        package = parts[0] if len(parts) > 1 else path.stem
        graph.setdefault(package, set()).update(_imported_packages(path) - {package})
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", "import cycle: " + " -> ".join([*trail, node])
        state[node] = "open"
        for other in sorted(graph.get(node, ())):
            visit(other, [*trail, node])
        state[node] = "done"

    for package in sorted(graph):
        visit(package, [])
    assert "options" not in graph["networks"] and "options" not in graph["fields"]
