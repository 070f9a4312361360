"""deployer-console: a terminal operations console for a self-hosted container deployer."""
__version__ = "0.1.0"
