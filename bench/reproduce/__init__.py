"""The paper's experiments through flowsweep (see __main__.py)."""
