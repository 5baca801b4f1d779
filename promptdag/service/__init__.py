"""The web service: `promptdag serve` serves every pipeline the project declares at
`POST /v1/pipelines/{name}/runs`, builds each (pipeline, variant) Driver once, A/B-assigns
requests to variants, and answers with provenance on every response."""
