"""The HTML report of saved runs (``python -m harness report``): `model` gathers what it shows from
the runs (through the same code as ``compare``), `figures` draws it, `site` writes the pages."""
