"""Model building blocks: the recurrent backbone, input encoders and pooling heads."""

from rnnlab.models.backbone import BackboneOutput, RecurrentBackbone
from rnnlab.models.embeddings import InputEncoder
from rnnlab.models.heads import Pooling

__all__ = ["BackboneOutput", "InputEncoder", "Pooling", "RecurrentBackbone"]
