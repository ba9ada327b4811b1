"""Applications' own models, as dbtool's users would point it at them (DBTOOL_MODELS)."""
