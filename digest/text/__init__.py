"""Text shared by the stages: LaTeX/accent cleaning, folding for matching, sentence splitting,
the syntax of a topic term.

Pure; imports nothing of the project.
"""

from __future__ import annotations

from digest.text._clean import clean_text, fold, scrub_surrogates
from digest.text._sentences import split_sentences
from digest.text._terms import normalize, term_problem, term_words

__all__ = ["clean_text", "fold", "normalize", "scrub_surrogates", "split_sentences",
           "term_problem", "term_words"]
