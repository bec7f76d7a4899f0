"""detection stage of prodet."""
