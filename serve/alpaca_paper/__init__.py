"""An Alpaca-compatible paper trading server over the simulated venue (see :mod:`.server`)."""

from serve.alpaca_paper.server import AlpacaPaperServer, ListedOption, RequestRecord

__all__ = ["AlpacaPaperServer", "ListedOption", "RequestRecord"]
