"""Fine-tuning and evaluation on image folders: ``emo train`` (also ``torchrun -m emo.train``), ``emo validate``."""
