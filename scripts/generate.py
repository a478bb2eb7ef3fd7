"""Sample text from a language-model checkpoint.

Text (data=shakespeare): prints the prompt followed by `length` sampled characters.
    python scripts/generate.py ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt \\
        prompt="ROMEO:" length=500 temperature=0.8 top_k=20 seed=0
Names (data=names_gen): prints `samples` names of the language, each started by the prompt.
    python scripts/generate.py ckpt_path=... language=Russian samples=5 prompt="Ko" seed=0
"""

from __future__ import annotations

import sys

from rnnlab.predict import Generator, parse_options

DEFAULTS = {
    "prompt": None,
    "length": "500",
    "temperature": "1.0",
    "top_k": "",
    "seed": "",
    "language": "",
    "samples": "1",
}


def main() -> None:
    options = parse_options(sys.argv[1:], DEFAULTS)
    try:
        generator = Generator(options["ckpt_path"])
        prompt = options["prompt"] if options["prompt"] is not None else generator.default_prompt
        seed = int(options["seed"]) if options["seed"] else None
        for sample in range(int(options["samples"])):
            text = generator(
                prompt,
                int(options["length"]),
                float(options["temperature"]),
                int(options["top_k"]) if options["top_k"] else None,
                None if seed is None else seed + sample,
                options["language"] or None,
            )
            print(prompt + text)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
