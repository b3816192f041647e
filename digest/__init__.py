"""paper-digest: each day's trending research papers, as personal email digests."""

__version__ = "0.1.0"
