"""The command line: `main` (the parser and dispatch), shared `options`, `output` and `running`,
and one module per command."""
