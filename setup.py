"""Installs the ``esrforge`` package from ``codes/`` with its command-line entry points."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="esrforge",
    version="0.1.0",
    description="Config-driven training and inference for ESRGAN super-resolution networks",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    package_dir={"": "codes"},
    packages=find_packages("codes"),
    install_requires=[
        line.strip()
        for line in (HERE / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ],
    extras_require={
        "demo": ["scikit-image>=0.22"],
        "wandb": ["wandb>=0.17"],
        "export": ["onnx>=1.16", "onnxruntime>=1.18"],
        "dev": [
            "pytest>=7",
            "ruff>=0.5",
            "mypy>=1.10",
            "types-PyYAML",
            "types-tqdm",
            "scikit-image>=0.22",
            "wandb>=0.17",
            "onnx>=1.16",
            "onnxruntime>=1.18",
        ],
    },
    entry_points={
        "console_scripts": [
            "esrforge-train=esrforge.cli.train:run",
            "esrforge-test=esrforge.cli.test:run",
            "esrforge-video=esrforge.cli.process_video:run",
            "esrforge-preview-degradations=esrforge.cli.preview_degradations:run",
            "esrforge-inspect-model=esrforge.cli.inspect_model:run",
            "esrforge-interpolate=esrforge.cli.interpolate:run",
            "esrforge-sweep-checkpoints=esrforge.cli.sweep_checkpoints:run",
            "esrforge-export=esrforge.cli.export:run",
        ]
    },
)
