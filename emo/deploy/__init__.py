"""Deployment: ONNX, TorchScript and ``torch.export`` files, checked after writing (``emo export``)."""
