"""Train an ESRGAN model: ``python codes/train.py -opt options/train_div2k_esrgan.yml``."""

from esrforge.cli.train import run

if __name__ == "__main__":
    run()
