"""Hamilton modules: the pipeline's steps. Every module here (not starting with `_`) is loaded
into the Driver; a `_`-prefixed module holds plain helpers, never nodes."""
