"""Translate sentences with a translation checkpoint.

Usage: python scripts/translate.py ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt \\
           text="Ein Mann fährt Fahrrad." [beam_size=5] [length_penalty=0.6]
       python scripts/translate.py ckpt_path=... < sentences.de      (one sentence a line)
Prints one translation a line, in input order. An empty line translates to an empty line;
words outside the source vocabulary are read as <unk> (listed on stderr); a sentence longer
than the training config's data.max_src_len is an error.
"""

from __future__ import annotations

import sys

from rnnlab.predict import Translator, number_option, parse_options

DEFAULTS = {"text": None, "beam_size": "1", "length_penalty": ""}


def main() -> None:
    options = parse_options(sys.argv[1:], DEFAULTS)
    if options["text"] is not None:
        texts = [options["text"]]
    else:
        texts = [line.rstrip("\n") for line in sys.stdin]
    try:
        translator = Translator(options["ckpt_path"])
        unknown = sorted({w for text in texts for w in translator.unknown_words(text)})
        if unknown:
            print(f"read as <unk>: {' '.join(unknown)}", file=sys.stderr)
        penalty = number_option(options, "length_penalty", float)
        translations = translator(texts, number_option(options, "beam_size", int, above=0), penalty)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    for translation in translations:
        print(translation)


if __name__ == "__main__":
    main()
