"""Evaluate a checkpoint on the test split: python eval.py ckpt_path=... [data=... model=...]."""

import hydra
from omegaconf import DictConfig

from rnnlab.errors import report_config_errors
from rnnlab.train import evaluate


@hydra.main(config_path="conf", config_name="eval")
@report_config_errors
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
