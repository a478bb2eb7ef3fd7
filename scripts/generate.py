"""Sample text from a language-model checkpoint.

Text (data=shakespeare): prints the prompt followed by `length` sampled characters.
    python scripts/generate.py ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt \\
        prompt="ROMEO:" length=500 temperature=0.8 top_k=20 seed=0
Names (data=names_gen): prints `samples` names of the language, each started by the prompt.
    python scripts/generate.py ckpt_path=... language=Russian samples=5 prompt="Ko" seed=0
"""

from __future__ import annotations

import sys

from rnnlab.predict import Generator, number_option, parse_options

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
        length = number_option(options, "length", int, above=0)
        temperature = number_option(options, "temperature", float, above=0)
        top_k = number_option(options, "top_k", int, above=0)
        seed = number_option(options, "seed", int)
        samples = number_option(options, "samples", int, above=0)
        generator = Generator(options["ckpt_path"])
        prompt = options["prompt"] if options["prompt"] is not None else generator.default_prompt
        for sample in range(samples):
            text = generator(
                prompt,
                length,
                temperature,
                top_k,
                None if seed is None else seed + sample,
                options["language"] or None,
            )
            print(prompt + text)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
