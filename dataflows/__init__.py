"""Hamilton modules: the pipeline steps. Every module here (not starting with `_`) is loaded
into the Driver; `_`-prefixed modules hold plain helper functions, never nodes."""
