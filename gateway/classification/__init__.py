"""Message classification: rule files in rules/, pure Python, no I/O at classify time.

Public API::

    from gateway.classification import (
        Classifier, Classification, RuleHit, RuleError, split_reply, CATEGORIES)
"""
from .classifier import Classifier
from .model import CATEGORIES, Classification, RuleError, RuleHit
from .trim import split_reply

__all__ = ["CATEGORIES", "Classification", "Classifier", "RuleError", "RuleHit",
           "split_reply"]
