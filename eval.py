"""Evaluate a checkpoint on the test split: python eval.py ckpt_path=... [data=...]."""

import hydra
from omegaconf import DictConfig

from rnnlab.cli import eval_task


@hydra.main(config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    eval_task(cfg)


if __name__ == "__main__":
    main()
