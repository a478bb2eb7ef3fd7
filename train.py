"""Train a model: python train.py model=lstm data=imdb [key=value ...] (see conf/train.yaml)."""

import hydra
from omegaconf import DictConfig

from rnnlab.cli import train_task


@hydra.main(config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return train_task(cfg)


if __name__ == "__main__":
    main()
