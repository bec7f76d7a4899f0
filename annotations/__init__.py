"""Annotations stage: Pascal VOC XML folders to the pickled dataset (and COCO JSON)."""

__version__ = "0.1.0"
