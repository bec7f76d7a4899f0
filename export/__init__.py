"""export stage of prodet."""
