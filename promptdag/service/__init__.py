"""The web service: `promptdag serve` builds every served variant's Driver once, A/B-assigns
requests to variants, and answers with provenance on every response."""
