"""prodet: object detection for product images, from Pascal VOC to an ONNX service.

The stages are subpackages, in pipeline order: ``prodet.annotations`` (VOC XML to the
pickled dataset), ``prodet.datasets`` (augmented training batches), ``prodet.detection``
(SSD and Fast R-CNN, training and evaluation), ``prodet.export`` (ONNX) and
``prodet.serve`` (the HTTP service, no torch). A stage imports only earlier stages; the
modules of this package (``commands``, ``demo``, ``live_server``) sit above them all.
"""

__version__ = "0.1.0"
