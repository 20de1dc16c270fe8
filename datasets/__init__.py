"""Dataset cards (YAML), shipped inside the package as ``hsi._datasets``."""
