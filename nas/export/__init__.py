"""Architecture cards and runnable models: ``card`` (select, write, rebuild) and ``formats``
(torch.export, ONNX, safetensors).
"""
