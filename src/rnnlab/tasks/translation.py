"""Encoder-decoder translation with attention; greedy and beam-search decoding; corpus BLEU.

    source ids --embedding--> RecurrentBackbone (any cell, bidirectional allowed) --> memory
    memory's summary --linear+tanh--> decoder's first state
    decoder: embedding [+ context] -> recurrent cell -> attention over the valid source
             positions (a mask: padding gets exactly zero weight) -> tanh(W[h; c; e]) -> vocab

`task.attention`: "bahdanau" (additive; the previous decoder state queries the memory and the
context is part of the recurrent input, Bahdanau et al. 2015) or "luong" (multiplicative,
"general" score; the current state queries, Luong et al. 2015). With Luong attention and
teacher forcing 1.0 the decoder reads the whole target in one fused kernel call; Bahdanau
attention, or a teacher-forcing ratio below 1, steps one token at a time.
"""

from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.text import SacreBLEUScore

from rnnlab.data.tokenizers import UNK, Vocabulary, tokenizer_from_config
from rnnlab.errors import ConfigError
from rnnlab.models.backbone import CELLS
from rnnlab.tasks.base import BaseTask

State = Tensor | tuple[Tensor, Tensor]


class Attention(nn.Module):
    """Scores decoder queries (B, T, Q) against memory (B, S, D); returns context and weights."""

    def __init__(self, kind: str, query_size: int, memory_size: int, attention_size: int) -> None:
        super().__init__()
        if kind not in ("bahdanau", "luong"):
            raise ConfigError(f"task.attention must be 'bahdanau' or 'luong', got {kind!r}")
        self.kind = kind
        if kind == "bahdanau":
            self.query = nn.Linear(query_size, attention_size, bias=False)
            self.key = nn.Linear(memory_size, attention_size)
            self.score = nn.Linear(attention_size, 1, bias=False)
        else:
            self.key = nn.Linear(memory_size, query_size, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        """The memory's projection, computed once per source batch."""
        return self.key(memory)

    def forward(
        self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """query (B, T, Q), keys (B, S, A), memory (B, S, D), mask (B, S) true on valid steps
        -> context (B, T, D), weights (B, T, S) summing to 1 over valid steps, 0 on padding."""
        if self.kind == "bahdanau":
            scores = self.score(torch.tanh(self.query(query)[:, :, None] + keys[:, None]))
            scores = scores.squeeze(-1)
        else:
            scores = query @ keys.transpose(1, 2)
        scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        weights = scores.softmax(dim=-1)
        return weights @ memory, weights


def top_hidden(state: State) -> Tensor:
    """The last layer's hidden state, (B, H)."""
    h = state[0] if isinstance(state, tuple) else state
    return h[-1]


class AttentionDecoder(nn.Module):
    def __init__(
        self,
        cell: str,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        memory_size: int,
        attention: str,
        attention_size: int,
        dropout: float,
        pad_id: int,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.feed_context = attention == "bahdanau"
        rnn_input = embedding_dim + (memory_size if self.feed_context else 0)
        self.rnn = CELLS[cell](rnn_input, hidden_size, batch_first=True)
        self.attention = Attention(attention, hidden_size, memory_size, attention_size)
        self.combine = nn.Linear(hidden_size + memory_size + embedding_dim, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, vocab_size)

    def project(self, output: Tensor, context: Tensor, embedded: Tensor) -> Tensor:
        mixed = torch.tanh(self.combine(torch.cat([output, context, embedded], dim=-1)))
        return self.out(self.dropout(mixed))

    def step(
        self, token: Tensor, state: State, memory: Tensor, keys: Tensor, mask: Tensor
    ) -> tuple[Tensor, State, Tensor]:
        """One token (B,) -> logits (B, V), the new state and the attention weights (B, S)."""
        embedded = self.dropout(self.embed(token))[:, None]  # (B, 1, E)
        if self.feed_context:
            context, weights = self.attention(top_hidden(state)[:, None], keys, memory, mask)
            output, state = self.rnn(torch.cat([embedded, context], dim=-1), state)
        else:
            output, state = self.rnn(embedded, state)
            context, weights = self.attention(output, keys, memory, mask)
        return self.project(output, context, embedded)[:, 0], state, weights[:, 0]

    def teacher_forced(
        self, tokens: Tensor, state: State, memory: Tensor, keys: Tensor, mask: Tensor
    ) -> Tensor:
        """Gold tokens (B, T) in, logits (B, T, V) out."""
        if not self.feed_context:  # the whole target through the fused kernel at once
            embedded = self.dropout(self.embed(tokens))
            output, _ = self.rnn(embedded, state)
            context, _ = self.attention(output, keys, memory, mask)
            return self.project(output, context, embedded)
        logits = []
        for t in range(tokens.size(1)):
            step_logits, state, _ = self.step(tokens[:, t], state, memory, keys, mask)
            logits.append(step_logits)
        return torch.stack(logits, dim=1)


def detokenize(tokens: list[str]) -> str:
    """Our word tokens as text for SacreBLEU: rejoin the hyphens the tokeniser split off, and
    write `<unk>` as one word (13a would split it into three and inflate the length)."""
    words = ["unk" if token == UNK else token for token in tokens]
    return re.sub(r"(\w) - (?=\w)", r"\1-", " ".join(words))


class TranslationTask(BaseTask):
    """Cross-entropy with teacher forcing (optionally label-smoothed); BLEU every validation."""

    def __init__(
        self,
        vocab_size: int,
        target_vocab_size: int,
        model: dict[str, Any],
        pad_id: int = 0,
        bos_id: int = 2,
        eos_id: int = 3,
        embedding_dim: int = 256,
        embedding_dropout: float = 0.3,
        attention: str = "luong",
        attention_size: int = 256,
        decoder_dropout: float = 0.3,
        teacher_forcing: float = 1.0,
        label_smoothing: float = 0.1,
        max_decode_len: int = 80,
        beam_size: int = 5,
        length_penalty: float = 0.6,
        tokens: list[str] | None = None,
        target_tokens: list[str] | None = None,
        tokenizer: dict[str, Any] | None = None,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        monitor: str = "val/bleu",
        monitor_mode: str = "max",
    ) -> None:
        super().__init__(monitor, monitor_mode)
        self.save_hyperparameters(logger=False)
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ConfigError(f"task.teacher_forcing must be in [0, 1], got {teacher_forcing}")
        if beam_size < 1:
            raise ConfigError(f"task.beam_size must be >= 1, got {beam_size}")
        self.build_encoder_and_backbone(
            model, embedding_dim, vocab_size, None, pad_id, embedding_dropout
        )
        hidden = self.backbone.hidden_size
        memory = self.backbone.output_size
        self.bridge = nn.Linear(memory, hidden)
        self.decoder = AttentionDecoder(
            self.backbone.cell,
            target_vocab_size,
            embedding_dim,
            hidden,
            memory,
            attention,
            attention_size,
            decoder_dropout,
            pad_id,
        )
        # the data's text pipeline, so a checkpoint translates and scores text on its own
        self.source_vocab = Vocabulary(tokens) if tokens else None
        self.target_vocab = Vocabulary(target_tokens) if target_tokens else None
        self.tokenizer = tokenizer_from_config(tokenizer) if tokenizer else None
        self.train_loss = MeanMetric()  # per target token, over every rank's batches
        self.val_loss = MeanMetric()
        self.val_bleu = SacreBLEUScore(tokenize="13a", lowercase=True)
        self.test_loss = MeanMetric()
        self.test_bleu_greedy = SacreBLEUScore(tokenize="13a", lowercase=True)
        self.test_bleu_beam = SacreBLEUScore(tokenize="13a", lowercase=True)

    # -- encoding and training -------------------------------------------------------------

    def encode(self, inputs: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor, State]:
        """-> memory (B, S, D), keys, mask (B, S), the decoder's initial state."""
        encoded = self.backbone(self.encoder(inputs), lengths)
        steps = torch.arange(inputs.size(1), device=inputs.device)
        mask = steps[None, :] < lengths.to(inputs.device)[:, None]
        h0 = torch.tanh(self.bridge(encoded.last))[None]  # (1, B, H)
        state: State = (h0, torch.zeros_like(h0)) if self.backbone.cell == "lstm" else h0
        return encoded.outputs, self.decoder.attention.keys(encoded.outputs), mask, state

    def forward(self, inputs: Tensor, lengths: Tensor, targets: Tensor) -> Tensor:
        """Teacher-forced logits (B, T-1, V) for targets[:, 1:]."""
        memory, keys, mask, state = self.encode(inputs, lengths)
        gold = targets[:, :-1]
        ratio = self.hparams.teacher_forcing if self.training else 1.0
        if ratio >= 1.0:
            return self.decoder.teacher_forced(gold, state, memory, keys, mask)
        logits, token = [], gold[:, 0]
        for t in range(gold.size(1)):
            step_logits, state, _ = self.decoder.step(token, state, memory, keys, mask)
            logits.append(step_logits)
            if t + 1 < gold.size(1):
                use_gold = torch.rand(token.shape, device=token.device) < ratio
                token = torch.where(use_gold, gold[:, t + 1], step_logits.argmax(-1))
        return torch.stack(logits, dim=1)

    def _loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
        logits = self(batch["inputs"], batch["lengths"], batch["targets"])
        gold = batch["targets"][:, 1:]
        loss = F.cross_entropy(
            logits.flatten(0, 1),
            gold.flatten(),
            ignore_index=self.hparams.pad_id,
            label_smoothing=self.hparams.label_smoothing if self.training else 0.0,
        )
        return loss, int((gold != self.hparams.pad_id).sum())

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, tokens = self._loss(batch)
        self.track_loss("train", loss, tokens)
        return loss

    # -- evaluation ------------------------------------------------------------------------

    def texts(self, sequences: list[list[int]]) -> list[str]:
        """Decoded target ids as detokenised text (what BLEU scores)."""
        if self.target_vocab is None:
            raise ConfigError(
                "this translation model holds no target vocabulary (its data gave no "
                "target_tokens): it decodes ids, not text"
            )
        return [detokenize(self.target_vocab.decode(ids)) for ids in sequences]

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, tokens = self._loss(batch)
        self.val_loss.update(loss, weight=tokens)
        hypotheses = self.texts(self.greedy(batch["inputs"], batch["lengths"])[0])
        self.val_bleu.update(hypotheses, [[text] for text in batch["references"]])

    def on_validation_epoch_end(self) -> None:
        loss = self.val_loss.compute()
        bleu = self.val_bleu.compute() * 100
        self.val_loss.reset()
        self.val_bleu.reset()
        self.log("val/loss", loss, prog_bar=True)
        self.log("val/ppl", torch.exp(loss))
        self.log("val/bleu", bleu, prog_bar=True)
        self.log_best({"val/loss": loss, "val/ppl": torch.exp(loss), "val/bleu": bleu})

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, tokens = self._loss(batch)
        self.test_loss.update(loss, weight=tokens)
        references = [[text] for text in batch["references"]]
        greedy, _ = self.greedy(batch["inputs"], batch["lengths"])
        self.test_bleu_greedy.update(self.texts(greedy), references)
        beam = self.beam_search(batch["inputs"], batch["lengths"])
        self.test_bleu_beam.update(self.texts(beam), references)

    def on_test_epoch_end(self) -> None:
        loss = self.test_loss.compute()
        self.log("test/loss", loss)
        self.log("test/ppl", torch.exp(loss))
        self.log("test/bleu_greedy", self.test_bleu_greedy.compute() * 100)
        self.log("test/bleu_beam", self.test_bleu_beam.compute() * 100)
        self.log("test/beam_size", float(self.hparams.beam_size))
        self.log("test/length_penalty", float(self.hparams.length_penalty))
        for metric in (self.test_loss, self.test_bleu_greedy, self.test_bleu_beam):
            metric.reset()

    # -- decoding --------------------------------------------------------------------------

    def _max_len(self, lengths: Tensor) -> int:
        return min(self.hparams.max_decode_len, int(lengths.max()) * 2 + 10)

    def _banned(self, logits: Tensor) -> Tensor:
        """Float32 scores (bf16 autocast would blur close beams) with pad and `<s>` excluded."""
        logits = logits.float()
        logits[:, [self.hparams.pad_id, self.hparams.bos_id]] = float("-inf")
        return logits

    @torch.no_grad()
    def greedy(
        self, inputs: Tensor, lengths: Tensor, max_len: int | None = None
    ) -> tuple[list[list[int]], Tensor]:
        """Batched greedy decoding: ids up to (not including) `</s>`, and the attention
        weights (B, steps, S) of every generated token."""
        was_training = self.training
        self.eval()
        memory, keys, mask, state = self.encode(inputs, lengths)
        batch = inputs.size(0)
        token = torch.full((batch,), self.hparams.bos_id, device=inputs.device)
        done = torch.zeros(batch, dtype=torch.bool, device=inputs.device)
        tokens, weights = [], []
        for _ in range(max_len or self._max_len(lengths)):
            logits, state, step_weights = self.decoder.step(token, state, memory, keys, mask)
            token = self._banned(logits).argmax(-1)
            token = token.masked_fill(done, self.hparams.pad_id)
            tokens.append(token)
            weights.append(step_weights)
            done |= token == self.hparams.eos_id
            if bool(done.all()):
                break
        self.train(was_training)
        rows = torch.stack(tokens, dim=1).tolist()
        return [self._cut(row) for row in rows], torch.stack(weights, dim=1)

    def _cut(self, ids: list[int]) -> list[int]:
        eos = self.hparams.eos_id
        return ids[: ids.index(eos)] if eos in ids else [i for i in ids if i != self.hparams.pad_id]

    @torch.no_grad()
    def beam_search(
        self,
        inputs: Tensor,
        lengths: Tensor,
        beam_size: int | None = None,
        length_penalty: float | None = None,
        max_len: int | None = None,
    ) -> list[list[int]]:
        """Batched beam search with GNMT's length penalty ((5 + n) / 6) ** alpha; a sentence
        stops once `beam_size` hypotheses have ended with `</s>`."""
        k = beam_size or self.hparams.beam_size
        alpha = self.hparams.length_penalty if length_penalty is None else length_penalty
        was_training = self.training
        self.eval()
        batch = inputs.size(0)
        memory, keys, mask, state = self.encode(inputs, lengths)
        memory, keys, mask = (x.repeat_interleave(k, dim=0) for x in (memory, keys, mask))
        state = (
            tuple(s.repeat_interleave(k, dim=1) for s in state)
            if isinstance(state, tuple)
            else state.repeat_interleave(k, dim=1)
        )
        scores = torch.full((batch, k), float("-inf"), device=inputs.device)
        scores[:, 0] = 0.0  # one live beam per sentence at the start
        token = torch.full((batch * k,), self.hparams.bos_id, device=inputs.device)
        history: list[list[int]] = [[] for _ in range(batch * k)]
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
        closed = [False] * batch

        def penalty(n: int) -> float:
            return ((5 + n) / 6) ** alpha

        steps = max_len or self._max_len(lengths)
        for step in range(steps):
            logits, state, _ = self.decoder.step(token, state, memory, keys, mask)
            log_probs = self._banned(logits).log_softmax(-1)  # (B*K, V)
            vocab = log_probs.size(-1)
            candidates = (scores.view(-1, 1) + log_probs).view(batch, k * vocab)
            top_scores, top_index = candidates.topk(2 * k, dim=-1)
            next_scores = torch.full_like(scores, float("-inf"))
            next_beam = torch.zeros(batch, k, dtype=torch.long)
            next_token = torch.full((batch, k), self.hparams.pad_id, dtype=torch.long)
            for b in range(batch):
                if closed[b]:
                    continue
                filled = 0
                for score, index in zip(top_scores[b].tolist(), top_index[b].tolist(), strict=True):
                    if score == float("-inf"):
                        break
                    beam, word = divmod(index, vocab)
                    if word == self.hparams.eos_id:
                        ids = history[b * k + beam]
                        finished[b].append((score / penalty(len(ids) + 1), ids))
                    else:
                        next_scores[b, filled] = score
                        next_beam[b, filled] = beam
                        next_token[b, filled] = word
                        filled += 1
                    if filled == k:
                        break
                if len(finished[b]) >= k or step == steps - 1:
                    closed[b] = True
                    if step == steps - 1:  # the maximum length: live hypotheses compete too
                        finished[b] += [
                            (
                                float(next_scores[b, j]) / penalty(step + 1),
                                history[b * k + int(next_beam[b, j])] + [int(next_token[b, j])],
                            )
                            for j in range(filled)
                        ]
                    next_scores[b] = float("-inf")
            if all(closed):
                break
            rows = (torch.arange(batch)[:, None] * k + next_beam).view(-1)
            history = [
                history[row] + [word]
                for row, word in zip(rows.tolist(), next_token.view(-1).tolist(), strict=True)
            ]
            rows = rows.to(inputs.device)
            state = tuple(s[:, rows] for s in state) if isinstance(state, tuple) else state[:, rows]
            scores = next_scores
            token = next_token.view(-1).to(inputs.device)
        self.train(was_training)
        return [max(hyps, key=lambda h: h[0])[1] if hyps else [] for hyps in finished]
