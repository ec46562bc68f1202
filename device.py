"""
Which torch device a run uses: pick_device. Serves train.py and evaluate.py.
"""
import torch


def pick_device(name=None):
    """
    The torch device to use: the one named, else cuda, else mps, else cpu.
    Example: pick_device() == torch.device("cpu")  # on a machine with no accelerator
    """
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu")
