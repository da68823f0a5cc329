"""The ``emo`` command: ``emo zoo``, ``predict``, ``convert`` and ``push`` here; ``train``, ``validate``, ``export``
and ``bench`` run the main of their own module (emo.training, emo.deploy, emo.benchmark)."""

from .main import build_parser, main

__all__ = ['build_parser', 'main']
