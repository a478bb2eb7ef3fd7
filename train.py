"""Train a model: python train.py model=lstm data=imdb [key=value ...] (see conf/train.yaml)."""

import hydra
from omegaconf import DictConfig

from rnnlab.errors import report_config_errors
from rnnlab.train import run


@hydra.main(config_path="conf", config_name="train")
@report_config_errors
def main(cfg: DictConfig) -> float | None:
    return run(cfg)


if __name__ == "__main__":
    main()
