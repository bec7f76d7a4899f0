"""serve stage of prodet."""
