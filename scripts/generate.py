"""Sample text from a language-model checkpoint, or music from a piano-roll checkpoint.

Text (data=shakespeare, data=corpus): prints the prompt followed by `length` sampled tokens:
characters, or for a word-level model words joined by spaces (`<eos>` a newline), the prompt
read with the checkpoint's own tokeniser and vocabulary.
    python scripts/generate.py ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt \\
        prompt="ROMEO:" length=500 temperature=0.8 top_k=20 seed=0
Names (data=names_gen): prints `samples` names of the language, each started by the prompt.
    python scripts/generate.py ckpt_path=... language=Russian samples=5 prompt="Ko" seed=0
Music (data=music): samples `length` frames after a primer and writes primer and continuation as
a MIDI file, `frame_seconds` a frame (`samples` > 1: out_1.mid, out_2.mid, ...). The primer is a
chord (`prime`: MIDI pitches) or the opening of a piece (`prime`: a .mid file, read at
`frame_seconds` a frame; `prime_frames`: how many of its frames, default all).
    python scripts/generate.py ckpt_path=... midi=out.mid prime=60,64,67 length=256 seed=0
    python scripts/generate.py ckpt_path=... midi=out.mid prime=piece.mid prime_frames=32
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from rnnlab.callbacks.piano_roll import primer_frame
from rnnlab.checkpoints import task_of
from rnnlab.data.music import read_midi, write_midi
from rnnlab.errors import ConfigError
from rnnlab.predict import Generator, load_task, number_option, parse_options
from rnnlab.tasks import PianoRollTask
from rnnlab.utils import read_checkpoint

DEFAULTS = {
    "prompt": None,
    "length": "500",
    "temperature": "1.0",
    "top_k": "",
    "seed": "",
    "language": "",
    "samples": "1",
    "midi": "",
    "prime": "60,64,67",
    "prime_frames": "",
    "frame_seconds": "0.25",
}

# options that only one kind of checkpoint reads: given to the other, they are refused by name
# rather than silently ignored
MUSIC_ONLY = ("midi", "prime", "prime_frames", "frame_seconds")
TEXT_ONLY = ("prompt", "top_k", "language")


def refuse_the_other_kinds_options(given: set[str], music: bool) -> None:
    ignored = [key for key in (TEXT_ONLY if music else MUSIC_ONLY) if key in given]
    if ignored:
        kind, other = ("music", "text") if music else ("text", "music")
        needs = "prime=, midi=" if music else "prompt=, top_k=, language="
        raise ConfigError(
            f"{', '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} for a {other} "
            f"checkpoint; ckpt_path is a {kind} one, which takes {needs}"
        )


def read_primer(prime: str, frame_seconds: float, frames: int | None) -> torch.Tensor:
    """`prime`: MIDI pitches (60,64,67), one frame, or a .mid file, its first `frames` frames
    (all when None)."""
    if prime.lower().endswith((".mid", ".midi")):
        roll = read_midi(prime, frame_seconds)[:frames]
        if not roll.any():
            where = f"its first {frames} frames" if frames else "it"
            raise ConfigError(f"prime={prime}: no note sounds in {where}")
        return torch.from_numpy(roll)
    try:
        pitches = [int(pitch) for pitch in prime.split(",") if pitch.strip()]
    except ValueError:
        raise ConfigError(
            f"prime={prime!r} is neither MIDI pitches (60,64,67) nor a .mid file"
        ) from None
    return primer_frame(pitches)


def generate_music(
    options: dict[str, str],
    length: int,
    temperature: float,
    seed: int | None,
    samples: int,
) -> None:
    """Sample piano rolls from the checkpoint and write each as a MIDI file."""
    if not options["midi"]:
        raise ConfigError("midi=PATH.mid is required for a music checkpoint")
    frame_seconds = number_option(options, "frame_seconds", float, above=0)
    frames = number_option(options, "prime_frames", int, above=0)
    primer = read_primer(options["prime"], frame_seconds, frames)
    task = load_task(options["ckpt_path"], PianoRollTask)
    path = Path(options["midi"])
    for sample in range(samples):
        generator = torch.Generator().manual_seed(seed + sample) if seed is not None else None
        roll = task.generate(primer, length, temperature, generator)
        target = path if samples == 1 else path.with_stem(f"{path.stem}_{sample + 1}")
        notes = write_midi(roll, target, frame_seconds)
        print(f"{target}: {len(roll)} frames ({len(primer)} primer), {notes} notes")


def main() -> None:
    options = parse_options(sys.argv[1:], DEFAULTS)
    try:
        length = number_option(options, "length", int, above=0)
        temperature = number_option(options, "temperature", float, above=0)
        top_k = number_option(options, "top_k", int, above=0)
        seed = number_option(options, "seed", int)
        samples = number_option(options, "samples", int, above=0)
        music = task_of(read_checkpoint(options["ckpt_path"])) is PianoRollTask
        refuse_the_other_kinds_options({arg.partition("=")[0] for arg in sys.argv[1:]}, music)
        if music:
            generate_music(options, length, temperature, seed, samples)
            return
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
