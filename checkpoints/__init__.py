"""Shipped pretrained weights (``index.yaml``, ``*.pt``, model cards), packaged as
``hsi._checkpoints``; read them through :mod:`hsi.pretrained`."""
