"""Input encoders: token ids through an embedding table, or features through a linear map."""

from __future__ import annotations

from torch import Tensor, nn


class InputEncoder(nn.Module):
    """Maps (B, T) token ids or (B, T, F) features to (B, T, E) backbone input.

    Exactly one of `vocab_size` (token input, `pad_id` rows stay zero) and `num_features`
    (real-valued input) is given; the data's `DataSpec` decides which.
    """

    def __init__(
        self,
        embedding_dim: int,
        vocab_size: int | None = None,
        num_features: int | None = None,
        pad_id: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if (vocab_size is None) == (num_features is None):
            raise ValueError("the data must give exactly one of vocab_size and num_features")
        if not isinstance(embedding_dim, int) or embedding_dim <= 0:
            raise ValueError(
                f"task.embedding_dim must be a positive integer, got {embedding_dim!r}"
            )
        if vocab_size is not None:
            self.encode = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        else:
            self.encode = nn.Linear(num_features, embedding_dim)
        self.dropout = nn.Dropout(dropout)
        self.output_size = embedding_dim

    def forward(self, inputs: Tensor) -> Tensor:
        return self.dropout(self.encode(inputs))  # (B, T, E)
