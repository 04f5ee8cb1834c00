"""rfm: personalised reward-feature models that train on many raters and run on one person's machine."""

__version__ = "0.1.0"
