"""Print the digits spoken in each recording, with a speech checkpoint (data=fsdd_connected: a
digit string; data=fsdd: one digit).

Usage: python scripts/transcribe.py ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt \
           audio=one.wav [audio=two.wav ...] [beam_size=8]
Output: one tab-separated line per recording: the digits, the file. Mono PCM wav; another
sample rate is resampled to the checkpoint's. beam_size (CTC only): the prefix beam search's
width (1: greedy); default the checkpoint's task.beam_size.
"""

from __future__ import annotations

import sys

from rnnlab.predict import Transcriber, number_option, parse_options


def main() -> None:
    arguments = sys.argv[1:]
    paths = [a.split("=", 1)[1] for a in arguments if a.startswith("audio=")]
    options = parse_options(
        [a for a in arguments if not a.startswith("audio=")], {"beam_size": None}
    )
    if not paths:
        sys.exit("audio=FILE.wav is required (repeat it for several files)")
    try:
        beam_size = number_option(options, "beam_size", int, above=0)
        transcripts = Transcriber(options["ckpt_path"])(paths, beam_size)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    for path, digits in zip(paths, transcripts, strict=True):
        print(f"{digits}\t{path}")


if __name__ == "__main__":
    main()
