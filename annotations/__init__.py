"""Annotations stage: Pascal VOC XML folders to the pickled dataset (and COCO JSON)."""
