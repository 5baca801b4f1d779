"""Prompt packs: each module here (not starting with `_`) is one pack, selected with the config
key `prompt_pack`; in a pack every prompt node has versions `<node>__vN`, each decorated
`@config.when(<node>_version="vN")`. Variants (named sets of config) live in variants.toml."""
