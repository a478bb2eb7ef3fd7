"""rnnlab's own callbacks; Lightning's built-ins are configured in conf/callbacks/."""

from rnnlab.callbacks.attention_map import AttentionMap
from rnnlab.callbacks.ctc_alignment import CTCAlignment
from rnnlab.callbacks.gradient_flow import GradientFlow
from rnnlab.callbacks.histograms import Histograms
from rnnlab.callbacks.piano_roll import PianoRollSamples
from rnnlab.callbacks.pruning import OptunaPruning
from rnnlab.callbacks.text_samples import TextSamples

__all__ = [
    "AttentionMap",
    "CTCAlignment",
    "GradientFlow",
    "Histograms",
    "OptunaPruning",
    "PianoRollSamples",
    "TextSamples",
]
