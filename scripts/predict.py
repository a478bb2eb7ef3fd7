"""Print the predicted label and its probability for each text.

Usage: python scripts/predict.py ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt text="..."
       python scripts/predict.py ckpt_path=... < texts.txt      (one text a line)
Output: one tab-separated line per text: label, probability, the text.
"""

from __future__ import annotations

import sys

from rnnlab.predict import Classifier, parse_options


def main() -> None:
    options = parse_options(sys.argv[1:], {"text": None})
    texts = (
        [options["text"]]
        if options["text"] is not None
        else [line.rstrip("\n") for line in sys.stdin]
    )
    try:
        classifier = Classifier(options["ckpt_path"])
        predictions = classifier(texts)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    for text, prediction in zip(texts, predictions, strict=True):
        print(f"{prediction.label}\t{prediction.probability:.4f}\t{text}")


if __name__ == "__main__":
    main()
