"""metarl: gradient-based meta-reinforcement learning (MAML, FO-MAML, HF-MAML)."""

__version__ = "0.1.0"
