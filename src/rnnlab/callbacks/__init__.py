"""rnnlab's own callbacks; Lightning's built-ins are configured in conf/callbacks/."""

from rnnlab.callbacks.pruning import OptunaPruning
from rnnlab.callbacks.text_samples import TextSamples

__all__ = ["OptunaPruning", "TextSamples"]
