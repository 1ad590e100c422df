"""The ``faceblit`` command line (Typer). Thin: parses, calls one library function, prints."""
