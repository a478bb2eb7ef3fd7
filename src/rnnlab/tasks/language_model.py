"""Token language models: a shared base, and the stream model trained with truncated BPTT.

`CharacterModel` holds what every character or word model shares: embedding [+ a condition] ->
recurrent backbone -> dropout -> linear over the vocabulary (tied or not), the per-token loss
and bits-per-character metrics (character level only), and sampling, as ids or as text with the
data's own vocabulary and tokeniser (they travel in the checkpoint's hyperparameters). Two tasks
build on it:

- `LanguageModelTask` (here): streams of characters or words (data=corpus, Tiny Shakespeare),
  consecutive (B, T) windows of B parallel streams, `inputs` and `targets`, reporting
  perplexity beside the loss. The hidden state left by one
  window starts the next, detached so gradients stop at the window's edge, and is reset at the
  start of every epoch and of every evaluation pass::

      window k-1          window k            window k+1
      [. . . .] --h--> [. . . .] --h--> [. . . .]     h: carried forward, detached

- `NameGenerationTask` (tasks/name_generation.py): whole ``<s> ... </s>`` sequences, optionally
  conditioned on a class (the language).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

from rnnlab.data.corpus import join_tokens, stream_tokens
from rnnlab.data.tokenizers import BOS, EOS, Vocabulary, tokenizer_from_config
from rnnlab.errors import ConfigError
from rnnlab.tasks.base import BaseTask

log = logging.getLogger(__name__)

State = Tensor | tuple[Tensor, Tensor] | None


def detach_state(state: State) -> State:
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


class CharacterModel(BaseTask):
    """Embedding [+ condition] -> recurrent backbone -> dropout -> linear over the vocabulary.

    Subclasses define `_loss(batch) -> (mean loss per character, characters)` and set
    `whole_sequences`: sampling then starts after `<s>` and stops at `</s>`.
    """

    whole_sequences = False

    def build_character_model(
        self,
        vocab_size: int,
        model: dict[str, Any],
        pad_id: int,
        embedding_dim: int,
        embedding_dropout: float,
        output_dropout: float,
        tie_weights: bool,
        tokens: list[str] | None,
        tokenizer: dict[str, Any] | None,
        condition: nn.Embedding | None = None,
    ) -> None:
        """`condition`: a class embedding concatenated to every input step, or None."""
        if model.get("bidirectional"):
            raise ConfigError("model.bidirectional=true cannot model language left to right")
        self.condition = condition
        self.build_encoder_and_backbone(
            model,
            embedding_dim,
            vocab_size,
            None,
            pad_id,
            embedding_dropout,
            extra_inputs=condition.embedding_dim if condition is not None else 0,
        )
        self.dropout = nn.Dropout(output_dropout)
        self.decoder = nn.Linear(self.backbone.output_size, vocab_size)
        if tie_weights:
            # The output layer is the embedding table itself (Press & Wolf 2017), so the
            # backbone's output must have the embedding's size. An error rather than a
            # projection: a projection is a layer the tied models of the literature and
            # PyTorch's word_language_model example do not have.
            if self.backbone.output_size != embedding_dim:
                raise ConfigError(
                    f"task.tie_weights=true needs model.hidden_size "
                    f"({self.backbone.output_size}) == task.embedding_dim ({embedding_dim}): "
                    "set them equal, or task.tie_weights=false"
                )
            # the example's uniform(-0.1, 0.1) for the shared table: with nn.Embedding's N(0, 1)
            # rows the first logits would spread as the hidden state's norm, which grows as
            # sqrt(H), where an untied nn.Linear starts near zero
            nn.init.uniform_(self.encoder.encode.weight, -0.1, 0.1)
            with torch.no_grad():
                self.encoder.encode.weight[pad_id].zero_()
            self.decoder.weight = self.encoder.encode.weight
        # the text pipeline the data used, so a checkpoint samples text on its own
        self.vocab = Vocabulary(tokens) if tokens else None
        self.tokenizer = tokenizer_from_config(tokenizer) if tokenizer else None
        # bits per character only where a token is a character
        self.per_character = not tokenizer or tokenizer.get("kind") != "word"
        self.train_loss, self.train_bpc = MeanMetric(), MeanMetric()  # over every rank's characters
        self.val_loss = MeanMetric()  # weighted by characters: the loss over the whole split

    def forward(
        self,
        inputs: Tensor,
        state: State = None,
        condition: Tensor | None = None,
        lengths: Tensor | None = None,
    ) -> tuple[Tensor, State]:
        """(B, T) ids [+ (B,) condition ids] -> (B, T, V) logits and the final state."""
        x = self.encoder(inputs)
        if self.condition is not None:
            if condition is None:
                raise ValueError("this model is conditional: pass the condition (labels)")
            x = torch.cat([x, self.condition(condition)[:, None].expand(-1, x.size(1), -1)], -1)
        encoded = self.backbone(x, lengths=lengths, state=state)
        return self.decoder(self.dropout(encoded.outputs)), encoded.state

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, characters = self._loss(batch)
        self.track_loss("train", loss, characters)
        if self.per_character:
            self.train_bpc.update(loss.detach() / math.log(2), characters)
            self.log("train/bpc", self.train_bpc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.val_loss.update(*self._loss(batch))

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.val_loss.update(*self._loss(batch))

    def split_metrics(self, split: str, loss: Tensor) -> dict[str, Tensor]:
        """What an evaluation pass reports from its mean loss per token."""
        values = {f"{split}/loss": loss}
        if self.per_character:
            values[f"{split}/bpc"] = loss / math.log(2)
        return values

    def log_split_loss(self, split: str) -> dict[str, Tensor]:
        """Log and return `split_metrics` over the pass, and start afresh."""
        loss = self.val_loss.compute()
        self.val_loss.reset()
        values = self.split_metrics(split, loss)
        for name, value in values.items():
            self.log(name, value, prog_bar=name == "val/loss")
        return values

    def on_validation_epoch_end(self) -> None:
        self.log_best(self.log_split_loss("val"))

    def on_test_epoch_end(self) -> None:
        self.log_split_loss("test")

    @torch.no_grad()
    def generate(
        self,
        prompt_ids: list[int],
        length: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        banned_ids: tuple[int, ...] = (),
        condition: int | None = None,
        stop_id: int | None = None,
    ) -> list[int]:
        """Sample up to `length` ids after the prompt, one step at a time, carrying the state.

        The prompt runs through the fused kernel once; each new id then costs one step.
        `banned_ids` (besides padding) are never sampled, e.g. the vocabulary's `<unk>`.
        `condition`: the class id of a conditional model. Sampling `stop_id` (e.g. `</s>`)
        ends the sequence; it is not returned.
        """
        if not prompt_ids:
            raise ValueError("the prompt must hold at least one character")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        was_training = self.training
        self.eval()
        if (condition is None) != (self.condition is None):
            raise ValueError(
                "a conditional model needs a condition and an unconditional one takes none"
            )
        labels = None
        if condition is not None:
            if not 0 <= condition < self.hparams.num_classes:
                raise ValueError(f"condition {condition} is not in [0, {self.hparams.num_classes})")
            labels = torch.tensor([condition], device=self.device)
        inputs = torch.tensor([prompt_ids], device=self.device)  # (1, P)
        state: State = None
        sampled: list[int] = []
        for _ in range(length):
            logits, state = self(inputs, state, labels)
            logits = logits[0, -1] / temperature  # (V,)
            logits[[self.hparams.pad_id, *banned_ids]] = float("-inf")
            if top_k is not None and top_k < logits.numel():
                threshold = torch.topk(logits, top_k).values[-1]
                logits = logits.masked_fill(logits < threshold, float("-inf"))
            next_id = int(torch.multinomial(logits.softmax(-1).cpu(), 1, generator=generator))
            if next_id == stop_id:
                break
            sampled.append(next_id)
            inputs = torch.tensor([[next_id]], device=self.device)
        self.train(was_training)
        return sampled

    def generate_text(
        self,
        prompt: str,
        length: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        condition: str | None = None,
    ) -> str:
        """The text sampled after `prompt` (not repeated), with the data's own vocabulary.

        A stream model continues the prompt for `length` tokens: characters, or words joined
        by spaces with `<eos>` a newline (a prompt's unknown words read as `<unk>`). A sequence
        model starts after `<s>`, stops at `</s>` and, when conditional, needs `condition` (a
        label such as "Russian").
        """
        if self.vocab is None or self.tokenizer is None:
            raise ConfigError(
                "this model holds no vocabulary or tokeniser (its data gave none): it samples ids "
                "with generate(), not text"
            )
        tokens = stream_tokens(self.tokenizer, prompt)
        unknown = sorted({t for t in tokens if t not in self.vocab.index})
        if unknown and self.per_character:
            raise ConfigError(f"prompt characters {unknown} are not in the model's vocabulary")
        if unknown:
            log.warning("prompt words %s are not in the model's vocabulary: read as <unk>", unknown)
        if self.whole_sequences:
            tokens = [BOS, *tokens]
        if not tokens:
            raise ConfigError("prompt= must not be empty for this model")
        labels = list(self.hparams.get("labels") or [])
        condition_id = None
        if self.condition is not None:
            if condition not in labels:
                raise ConfigError(f"language={condition!r}: choose one of {labels}")
            condition_id = labels.index(condition)
        elif condition:
            raise ConfigError("this model is not conditional: leave out language=")
        specials = [self.vocab.index[BOS]] if self.whole_sequences else []
        ids = self.generate(
            self.vocab.encode(tokens),
            length,
            temperature,
            top_k,
            generator,
            banned_ids=(self.vocab.unk_id, *specials),
            condition=condition_id,
            stop_id=self.vocab.index[EOS] if self.whole_sequences else None,
        )
        text = join_tokens(self.vocab.decode(ids), words=not self.per_character)
        # the first word follows the prompt's last with a space, unless the prompt ends a line
        return text.lstrip(" ") if not prompt or prompt[-1].isspace() else text


class LanguageModelTask(CharacterModel):
    """A character or word stream with truncated BPTT; the carried state travels in
    checkpoints. Evaluation reports perplexity, the exponential of the loss per token."""

    def __init__(
        self,
        vocab_size: int,
        model: dict[str, Any],
        pad_id: int = 0,
        embedding_dim: int = 128,
        embedding_dropout: float = 0.0,
        output_dropout: float = 0.0,
        tie_weights: bool = False,
        tokens: list[str] | None = None,
        tokenizer: dict[str, Any] | None = None,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        monitor: str = "val/loss",
        monitor_mode: str = "min",
    ) -> None:
        super().__init__(monitor, monitor_mode)
        self.save_hyperparameters(logger=False)
        self.build_character_model(
            vocab_size,
            model,
            pad_id,
            embedding_dim,
            embedding_dropout,
            output_dropout,
            tie_weights,
            tokens,
            tokenizer,
        )
        self.state: State = None
        self.window_loss = MeanMetric()  # nanoGPT's estimator, over the windows loader

    def _loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
        """Mean loss per predicted character of the window, carrying the state on."""
        logits, state = self(batch["inputs"], self.state)
        self.state = detach_state(state)
        targets = batch["targets"]
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten()), targets.numel()

    def split_metrics(self, split: str, loss: Tensor) -> dict[str, Tensor]:
        return super().split_metrics(split, loss) | {f"{split}/ppl": loss.exp()}

    def on_train_epoch_start(self) -> None:
        self.state = None
        self._state_to_restore = None  # saved at an epoch's end: the new epoch starts afresh

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The carried stream state, with the training window it continues into.

        A run killed mid-epoch resumes at the next window (the loader's state) and must start
        it from this state, as the uninterrupted run does. Plain tensors: the checkpoint loads
        with weights_only=True. Under DDP each rank reads its own streams, so every rank's state
        is gathered (all ranks save together) and each takes its own back.
        """
        super().on_save_checkpoint(checkpoint)
        if self.state is None:  # before the first window
            return
        tensors = list(self.state) if isinstance(self.state, tuple) else [self.state]
        if self.trainer.world_size > 1:
            tensors = [self.all_gather(t) for t in tensors]  # (world, layers, B, H)
        progress = self.trainer.fit_loop.epoch_loop.batch_progress.current
        checkpoint["stream_state"] = {
            "tensors": [t.detach().cpu() for t in tensors],
            "world_size": self.trainer.world_size,
            "epoch": self.current_epoch,
            "next_batch": progress.processed,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self._state_to_restore = checkpoint.get("stream_state")

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        saved, self._state_to_restore = getattr(self, "_state_to_restore", None), None
        # Only for the window the state was saved before: a checkpoint from an epoch's end
        # resumes on a new epoch, which starts from a fresh state.
        if not saved:
            return
        if (saved["epoch"], saved["next_batch"]) != (self.current_epoch, batch_idx):
            # never silently: the resumed run would then differ from the uninterrupted one
            log.warning(
                "the checkpoint's stream state continues epoch %d at window %d, but training "
                "resumed at epoch %d, window %d: starting from a fresh state instead",
                saved["epoch"],
                saved["next_batch"],
                self.current_epoch,
                batch_idx,
            )
            return
        if saved["world_size"] != self.trainer.world_size:
            raise ConfigError(
                f"ckpt_path: this checkpoint was written by {saved['world_size']} processes, "
                f"whose text streams are laid out differently from this run's "
                f"{self.trainer.world_size}: resume with the same trainer.devices and "
                "trainer.num_nodes"
            )
        tensors = saved["tensors"]
        if saved["world_size"] > 1:
            tensors = [t[self.global_rank] for t in tensors]
        tensors = [t.to(self.device) for t in tensors]
        self.state = tuple(tensors) if len(tensors) > 1 else tensors[0]

    def on_validation_epoch_start(self) -> None:
        self.train_state, self.state = self.state, None

    def _evaluate(self, batch: dict[str, Tensor], split: str, dataloader_idx: int) -> None:
        """Loader 0: the stream, weighted by characters so the epoch value is the loss over the
        whole stream. Loader 1 (with `data.estimate_windows`): nanoGPT's estimator, random
        windows each read from a fresh state, leaving the carried stream state alone."""
        if dataloader_idx == 0:
            self.val_loss.update(*self._loss(batch))
            return
        logits, _ = self(batch["inputs"])
        targets = batch["targets"]
        self.window_loss.update(
            F.cross_entropy(logits.flatten(0, 1), targets.flatten()), targets.numel()
        )
        self.log(
            f"{split}/loss_windows",
            self.window_loss,
            on_step=False,
            on_epoch=True,
            add_dataloader_idx=False,
        )

    def validation_step(
        self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._evaluate(batch, "val", dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        values = self.log_split_loss("val")
        if self.window_loss.update_called:
            values["val/loss_windows"] = self.window_loss.compute()
        self.log_best(values)
        self.state = self.train_state

    def on_test_epoch_start(self) -> None:
        self.state = None

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, "test", dataloader_idx)
