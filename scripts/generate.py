"""Sample text from a language-model checkpoint.

Usage: python scripts/generate.py ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt \\
           prompt="ROMEO:" length=500 temperature=0.8 top_k=20 seed=0
Prints the prompt followed by `length` sampled characters.
"""

from __future__ import annotations

import sys

from rnnlab.predict import Generator

DEFAULTS = {"prompt": "\n", "length": "500", "temperature": "1.0", "top_k": "", "seed": ""}


def main() -> None:
    options = dict(DEFAULTS)
    for argument in sys.argv[1:]:
        key, sep, value = argument.partition("=")
        if not sep or key not in (*DEFAULTS, "ckpt_path"):
            sys.exit(f"unknown argument {argument!r}; keys: ckpt_path, {', '.join(DEFAULTS)}")
        options[key] = value
    if "ckpt_path" not in options:
        sys.exit("ckpt_path=PATH is required")
    try:
        generator = Generator(options["ckpt_path"])
        text = generator(
            options["prompt"],
            int(options["length"]),
            float(options["temperature"]),
            int(options["top_k"]) if options["top_k"] else None,
            int(options["seed"]) if options["seed"] else None,
        )
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    print(options["prompt"] + text)


if __name__ == "__main__":
    main()
