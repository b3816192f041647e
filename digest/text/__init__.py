"""Text shared by the stages: LaTeX/accent cleaning, folding for matching, sentence splitting.

Pure; imports nothing of the project.
"""

from __future__ import annotations

from digest.text._clean import clean_text, fold
from digest.text._sentences import split_sentences

__all__ = ["clean_text", "fold", "split_sentences"]
