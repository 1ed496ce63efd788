"""A student whose answer is known without training: ultralytics YOLO from ``yolo11n.yaml`` whose detection head
is set to give one box covering the whole image, of the first class, with confidence about 0.99.

Saved as an ultralytics checkpoint and loaded back by ``YOLO(path)`` (the student grounder's own path). On
held-out images whose objects fill most of the picture it has a held-out AP well above zero, so a student
trained for seconds from random weights does not beat it: the promotion rule's "a worse student is not
promoted", made deterministic on any CPU."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

FAR = 12.0  # a logit that wins (the DFL head's last bin: every side at its farthest) or loses (a class)
SURE = 5.0  # the class logit: sigmoid(5) ~ 0.993


def whole_image_student(path: Path, classes: Sequence[str], model: str = "yolo11n.yaml") -> Path:
    """Write the checkpoint to ``path`` (class names ``classes``, in class-id order) and return ``path``."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    net = DetectionModel(model, nc=len(classes), verbose=False)
    head = net.model[-1]
    with torch.no_grad():
        for level, (box, cls) in enumerate(zip(head.cv2, head.cv3)):
            box_out, cls_out = box[-1], cls[-1]  # the last 1x1 convolutions: 4 x reg_max and nc channels
            box_out.weight.zero_()
            bins = box_out.bias.view(4, head.reg_max)
            bins.fill_(0.0)
            bins[:, -1] = FAR
            cls_out.weight.zero_()
            cls_out.bias.fill_(-FAR)  # under any min_score: only the coarsest level's boxes (the largest) remain
            if level == len(head.cv3) - 1:
                cls_out.bias[0] = SURE
    net.names = {i: str(c) for i, c in enumerate(classes)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    train_args = {"task": "detect", "model": model, "imgsz": 64}  # ultralytics predicts at the training size
    torch.save({"model": net.eval(), "train_args": train_args, "epoch": -1, "optimizer": None, "ema": None,
                "date": None, "version": "label-factory tiny"}, path)
    return path
