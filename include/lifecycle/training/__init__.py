"""Training: preprocessing, the PyTorch trainer (one process or torchrun DDP), offline evaluation, the promotion
gate, and the packaged model (pyfunc). Decides whether a candidate becomes the challenger. May import the
foundation, ``data`` and ``registry``."""
