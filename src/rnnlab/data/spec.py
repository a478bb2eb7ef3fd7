"""DataSpec: all a task knows of its data, handed over once by the datamodule.

Data flows one way: datamodule -> DataSpec -> task constructor (plain values, saved in the
checkpoint's hyperparameters) and datamodule -> batches -> task steps. No task or callback reads
the datamodule, so a task restored from its checkpoint alone can decode, sample and evaluate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class DataSpec:
    """Sizes that flow from data to model.

    vocab_size / pad_id: token input (an embedding table); num_features: real-valued input.
    target_vocab_size: the output vocabulary of a sequence-to-sequence task.
    num_classes: classification targets. horizon / lookback: forecasting steps out and in.
    labels: class names, in class-id order, for confusion matrices and predictions.
    class_counts: training examples per class, for class-weighted losses.
    tokens / target_tokens: the input and output vocabularies in id order, for tasks that turn
    ids back into text (sampling, BLEU, attention maps); tokenizer: the input tokeniser's config
    (`rnnlab.data.tokenizers.tokenizer_from_config`), for tasks that encode a prompt.
    """

    vocab_size: int | None = None
    target_vocab_size: int | None = None
    num_features: int | None = None
    num_classes: int | None = None
    pad_id: int = 0
    horizon: int | None = None
    lookback: int | None = None
    labels: tuple[str, ...] = field(default_factory=tuple)
    class_counts: tuple[int, ...] = field(default_factory=tuple)
    tokens: tuple[str, ...] = field(default_factory=tuple)
    target_tokens: tuple[str, ...] = field(default_factory=tuple)
    tokenizer: dict | None = None

    def task_kwargs(self) -> dict:
        """The non-empty fields as plain keyword arguments for a task's constructor
        (`pad_id` only with token input)."""
        return {
            key: (list(value) if isinstance(value, tuple) else value)
            for key, value in asdict(self).items()
            if value not in (None, ()) and (key != "pad_id" or self.vocab_size is not None)
        }
