"""Version of faceblit; kept apart so ``faceblit --version`` imports nothing heavy."""

__version__ = "0.1.0"
